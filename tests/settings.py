"""Settings for the test suite: the production settings (portal/settings.py with DJANGO_DEBUG off), less what a
plain-HTTP test server cannot do. Everything else, CSP, frame and sniffing headers, login throttling, applies as in
production; tests/portal/test_security.py checks the production settings themselves with `check --deploy`."""

import os
import uuid

# A namespace of this run's own in the shared Redis (queues, locks, cached tails), set before the portal's settings
# read it and inherited by the workers and servers the tests start: a `make dev` or another test run on the same
# machine never sees this run's keys, nor this run theirs.
os.environ.setdefault("REDIS_KEY_PREFIX", f"test-{uuid.uuid4().hex[:12]}:")

from portal.settings import *  # noqa: E402, F403
from portal.settings import AZURE_STORAGE_CONNECTION_STRING  # noqa: E402

# Test clients and the live server speak plain HTTP: no redirect to HTTPS, no HSTS, cookies without Secure.
HTTPS = False
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = False

# Every persona has a password; the real hasher (PBKDF2, deliberately slow) would dominate the suite's time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Nothing a test does reaches a `make dev` running on the same machine (localbatch on 8089, Azurite on 10000), nor
# depends on one running or not: a test that needs Batch or storage starts its own (the localbatch and azurite
# fixtures), and the defaults point where nothing answers (the discard port), as they would on a machine without
# make dev. What the environment sets explicitly still wins.
NOWHERE = "http://127.0.0.1:9"
BATCH_ACCOUNT_URL = os.environ.get("BATCH_ACCOUNT_URL", NOWHERE)
AZURE_STORAGE_CONNECTION_STRING = os.environ.get(
    "AZURE_STORAGE_CONNECTION_STRING", AZURE_STORAGE_CONNECTION_STRING.replace("http://127.0.0.1:10000", NOWHERE))

# The dashboard's chart is counted on each request and never stored: a test sees the rows it made, not counts
# another test stored in the shared cache. tests/portal/test_dashboard_rollups.py tests the stored counts.
DASHBOARD_ROLLUP_STALE_SECONDS = -1
# ...and so is the rest of the dashboard (tests/portal/test_dashboard_rollups.py tests the shared read).
DASHBOARD_SHARED_SECONDS = 0
# ...and the shared sections of pages: a test sees the rows it just changed (tests/portal/test_shared_fragments.py
# tests the sharing).
PAGE_SHARED_SECONDS = 0
# ...and a job's pace behind its finish estimate (tests/portal/test_estimates.py tests the shared read).
ESTIMATE_PACE_SECONDS = 0
