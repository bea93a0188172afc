"""gunicorn's settings for the portal in production (README, "Run it in production"); gunicorn reads this file from
its working directory, the checkout. tests/stack.py starts gunicorn with it too, so what is tested is what runs.

Threaded workers (gthread): a process's main thread keeps answering gunicorn's heartbeat while its threads stream a
log download or a logs zip to a slow client, so `timeout` kills only a process that is truly stuck, not a long
download. Requests are mostly waits on PostgreSQL, Redis and Batch, which threads overlap."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# About two per core; each holds `threads` database connections at most (conn_max_age keeps them open).
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A worker silent this long is stuck and is replaced; a restart (HUP, deploy) lets requests finish for this long.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
# Behind a reverse proxy that reuses its connections to us.
keepalive = 5
# Replace each worker after this many requests, jittered by up to a fifth so they do not all restart at once:
# bounds slow leaks. Not much lower: a new worker loads Django again (about a second of CPU) and starts with cold
# caches. At 10,000 ± 1,000 the three workers of a busy machine (100 requests/s each) restarted together every
# 100 s or so, and every request of those seconds waited for them.
max_requests = 100000
max_requests_jitter = 20000
accesslog = "-"
# X-Forwarded-* are read from these addresses only (the proxy's); Django decides separately (TRUSTED_PROXY_COUNT).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# The control socket (gunicorn 24+) defaults to one path per machine user; nothing here uses it.
control_socket_disable = True
