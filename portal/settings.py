"""Django settings for the Batch portal.

Everything comes from the environment; with nothing set, it runs on embedded local defaults.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import redis
from django.core.exceptions import ImproperlyConfigured

from portal.accounts import roles

BASE_DIR = Path(__file__).resolve().parent.parent
# Runtime state of the embedded setup (SQLite file, secret key, broker files); never committed.
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def dev_secret_key(path: Path) -> str:
    """Return the secret key stored at path, creating a random one the first time."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = path.with_name(f".{path.name}.{os.getpid()}")
    candidate.write_text(secrets.token_urlsafe(50))
    candidate.chmod(0o600)
    try:
        # link() fails if the file exists, so processes starting together agree on one key.
        os.link(candidate, path)
    except FileExistsError:
        pass
    finally:
        candidate.unlink()
    return path.read_text().strip()


def celery_broker(redis_url: str, fallback_dir: Path, timeout: float = 0.5) -> tuple[str, dict, str]:
    """Choose Celery's broker: Redis if it answers at redis_url, else files under fallback_dir.

    Returns (broker_url, transport_options, reason). The filesystem transport works across
    the processes of one machine, which is all the embedded setup needs.
    """
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=timeout, socket_timeout=timeout).ping()
        return redis_url, {}, f"Redis answers at {redis_url}"
    except (redis.RedisError, OSError) as exc:
        reason = f"no Redis answers at {redis_url} ({exc.__class__.__name__}: {exc})"
    for folder in ("queue", "processed", "control"):
        (fallback_dir / folder).mkdir(parents=True, exist_ok=True)
    options = {
        # One folder for in and out: every producer and consumer shares the same queue files.
        "data_folder_in": str(fallback_dir / "queue"),
        "data_folder_out": str(fallback_dir / "queue"),
        "processed_folder": str(fallback_dir / "processed"),
        "control_folder": str(fallback_dir / "control"),
        "store_processed": False,
    }
    return "filesystem://", options, reason


def cache_settings(redis_url: str, *, debug: bool, key_prefix: str = "", timeout: float = 0.5) -> tuple[dict, str]:
    """Choose Django's cache: Redis at redis_url, which every web process shares (the live tail of a running task
    is read from Batch once for all viewers, whichever process serves them, portal/logs/tail.py shared_tail); with
    DEBUG only, a memory cache of each process when no Redis answers. Returns (CACHES, reason)."""
    shared = {"default": {
        # A Redis that does not answer is a cache miss, not an error page (portal/cache.py).
        "BACKEND": "portal.cache.TolerantRedisCache",
        "LOCATION": redis_url,
        "KEY_PREFIX": f"{key_prefix}portal",
        # A Redis that stops answering costs a viewer half a second, not a hung page.
        "OPTIONS": {"socket_connect_timeout": timeout, "socket_timeout": 2,
                    # An entry written by another layout of the code reads as a miss (portal/cache.py).
                    "serializer": "portal.cache.TolerantSerializer"},
    }}
    if not debug:
        return shared, f"Redis at {redis_url}, without a fallback (DJANGO_DEBUG is off)"
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=timeout, socket_timeout=timeout).ping()
        return shared, f"Redis answers at {redis_url}"
    except (redis.RedisError, OSError) as exc:
        reason = f"no Redis answers at {redis_url} ({exc.__class__.__name__})"
    return ({"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            f"{reason}: a memory cache in each process, so each web process reads a live tail on its own")


DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or dev_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "portal",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Lets runserver serve static files the way production does, through WhiteNoise.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    # Wraps the template loaders so a view can render "area/page.html#partial" for htmx requests.
    "template_partials",
    # Counts failed sign-ins and locks a username at one address after too many (see "Sign-in" below).
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Content-Security-Policy on every response, pages and errors alike (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Refuses unreadable query parameters (NUL, very long) with a 400; no-store on signed-in responses.
    "portal.request_guard.RequestGuardMiddleware",
    # Every view needs a signed-in person unless marked login_not_required (login, logout, health, single
    # sign-on), and then a role: a page that forgets its decorator still shows nothing to the wrong people.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "portal.accounts.middleware.RoleRequiredMiddleware",
    # Puts the request's address aside for the audit history (portal/audit/middleware.py).
    "portal.audit.middleware.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# How many proxies of ours sit in front of the web process and append to X-Forwarded-For; 0 (the default) ignores
# the header, which any client can write. The audit history records the address this yields.
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
# The key of the audit history's hash chain (portal/audit/chain.py): a record added by anyone without it (the app's
# own database role included) does not verify. Empty: derived from SECRET_KEY. Set it in production and keep it
# as long as the history: records keyed with another key do not verify.
AUDIT_HMAC_KEY = os.environ.get("AUDIT_HMAC_KEY", "")

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if "DATABASE_URL" not in os.environ:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=600,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker's processes and the web server write the same file. IMMEDIATE takes the write lock
    # when a transaction begins, so a transaction that reads then writes waits its turn (timeout, in
    # seconds) instead of failing with "database is locked"; WAL lets pages read while the sync writes.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        transaction_mode="IMMEDIATE", timeout=20, init_command="PRAGMA journal_mode=WAL;")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where `manage.py collectstatic` gathers the files WhiteNoise serves (production runs it at every release).
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Not the manifest variant: it needs collectstatic before any page renders, which tests
    # and runserver skip. Vendored files carry their version in the file name instead.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Keys, SAS signatures and passwords are blanked in every record before it is written (portal/redact.py).
    "filters": {"redact_secrets": {"()": "portal.redact.RedactSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact_secrets"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # The Azure SDK logs every request and response at INFO: several lines per Batch call, every few
        # seconds from the sync. Its warnings and errors still show.
        "azure": {"level": os.environ.get("AZURE_LOG_LEVEL", "WARNING")},
        # Django's own handlers (its console in DEBUG, error e-mails) do not redact; ours, through root, does.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        # A 4xx is one line in the access log (runserver's below, gunicorn's in production); django.request would
        # write a second ("Not Found: /x"). Errors (5xx) still come with their traceback.
        "django.request": {"level": "ERROR"},
        # runserver's request lines (query strings included) go through the same redaction.
        "django.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # In development the console is the developer's: Celery's two lines per task run (received, succeeded)
        # and beat's line per schedule, every few seconds, would drown what matters. Production keeps them.
        **({name: {"level": "WARNING"} for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat")}
           if DEBUG else {}),
    },
}

# E-mail (completion e-mails, batchsync/notify.py). Printed to the console in development unless EMAIL_BACKEND
# says otherwise; otherwise sent through the SMTP server these name (tests use Django's in-memory outbox).
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
# A mail server that does not answer must not hold a worker for minutes.
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Batch portal <batch-portal@localhost>")

# Azure Batch: localbatch by default; a real account is only a change of these three.
BATCH_ACCOUNT_URL = os.environ.get("BATCH_ACCOUNT_URL", "http://127.0.0.1:8089")
BATCH_ACCOUNT_NAME = os.environ.get("BATCH_ACCOUNT_NAME", "localbatch")
# localbatch's published development key (localbatch.DEV_ACCOUNT_KEY), not a secret.
BATCH_ACCOUNT_KEY = os.environ.get(
    "BATCH_ACCOUNT_KEY",
    "bG9jYWxiYXRjaC1kZXYta2V5LW5vdC1hLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVmZ2hpams=",
)

# How the portal signs its requests to that account: "shared_key" (BATCH_ACCOUNT_KEY) or "entra_id" (azure-identity:
# the user-assigned managed identity BATCH_MANAGED_IDENTITY_CLIENT_ID, or DefaultAzureCredential when that is empty).
BATCH_AUTH = os.environ.get("BATCH_AUTH", "shared_key")
if BATCH_AUTH not in ("shared_key", "entra_id"):
    raise ImproperlyConfigured(f"BATCH_AUTH must be shared_key or entra_id, not {BATCH_AUTH!r}.")
BATCH_MANAGED_IDENTITY_CLIENT_ID = os.environ.get("BATCH_MANAGED_IDENTITY_CLIENT_ID", "")
# A CA file the Batch client trusts instead of the system's: for test and private endpoints only (localbatch over
# HTTPS prints its own, `trust (CA):`). Real Batch endpoints have publicly trusted certificates: leave it empty.
BATCH_CA_BUNDLE = os.environ.get("BATCH_CA_BUNDLE", "")

# The sync (batchsync/sync/): how many requests of one pass are in flight at once (a real region answers in
# 50–150 ms, so a pass of 200 jobs needs them side by side), and the request budget of one account, shared by every
# worker process through REDIS_URL: every request to Batch takes a token, and a Retry-After from Batch pauses them all.
SYNC_CONCURRENCY = int(os.environ.get("SYNC_CONCURRENCY", "32"))
BATCH_REQUESTS_PER_SECOND = float(os.environ.get("BATCH_REQUESTS_PER_SECOND", "400"))
# The archiver (batchsync/archive.py) starts at most this many tasks' log copies a second (0: no limit): background
# work, spread over its 15 s period instead of taking the CPU it shares with the pages in one burst, and reading from
# the nodes' file API while their tasks run a little at a time.
ARCHIVE_TASKS_PER_SECOND = float(os.environ.get("ARCHIVE_TASKS_PER_SECOND", "5"))

# Azure Blob Storage: Azurite by default, with its published development account.
AZURE_STORAGE_CONNECTION_STRING = os.environ.get(
    "AZURE_STORAGE_CONNECTION_STRING",
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
)

# Or Microsoft Entra ID: with the account's Blob URL set (https://<account>.blob.core.windows.net), the connection
# string is not read; the portal signs in as the user-assigned managed identity named here, or with
# DefaultAzureCredential when it is empty, and every SAS it hands out is a user-delegation SAS (7 days at most).
AZURE_STORAGE_ACCOUNT_URL = os.environ.get("AZURE_STORAGE_ACCOUNT_URL", "")
AZURE_STORAGE_MANAGED_IDENTITY_CLIENT_ID = os.environ.get("AZURE_STORAGE_MANAGED_IDENTITY_CLIENT_ID", "")
# A CA file to trust for that URL instead of the system's: test and private endpoints only (Azurite over HTTPS).
AZURE_STORAGE_CA_BUNDLE = os.environ.get("AZURE_STORAGE_CA_BUNDLE", "")

# Containers the portal keeps inputs, saved logs and task outputs in (created by dev_bootstrap), and how long
# the SAS URLs it signs live: a browser upload's is short; a task's must outlast the job (tasks upload their logs
# when they end, possibly days after submission).
STORAGE_INPUTS_CONTAINER = os.environ.get("STORAGE_INPUTS_CONTAINER", "portal-inputs")
STORAGE_LOGS_CONTAINER = os.environ.get("STORAGE_LOGS_CONTAINER", "portal-logs")
STORAGE_OUTPUTS_CONTAINER = os.environ.get("STORAGE_OUTPUTS_CONTAINER", "portal-outputs")
# The dashboard's chart is counted by beat every 30 s for every viewer; a page counts for itself only when the
# stored counts are older than this (beat stopped). portal/dashboard/rollups.py.
DASHBOARD_ROLLUP_STALE_SECONDS = float(os.environ.get("DASHBOARD_ROLLUP_STALE_SECONDS", "90"))
# The rest of the dashboard is read once per this many seconds for everyone who sees the same accounts (0: per
# request). Its pages poll every 5 s and the mirror moves every 5 s, so 2 s adds little age and saves most reads.
DASHBOARD_SHARED_SECONDS = float(os.environ.get("DASHBOARD_SHARED_SECONDS", "2"))
# The status sections of the dashboard, job list, job page and task page are rendered once per this many seconds
# for everyone who sees them alike (portal/pages.py, "Shared fragments"); 0 renders them for every request.
PAGE_SHARED_SECONDS = int(os.environ.get("PAGE_SHARED_SECONDS", "2"))
# A running job's pace (its recent endings and run times, portal/jobs/estimates.py) is read from its tasks once per
# this many seconds for every page and viewer (0: per estimate): it reads up to thousands of index entries a job, and
# over a window of 15 minutes or more a minute's age moves the rate little. Its counts and sync time stay current.
ESTIMATE_PACE_SECONDS = float(os.environ.get("ESTIMATE_PACE_SECONDS", "60"))
# The audit chain's heads, one blob each, never replaced (portal/audit/heads.py); give it an immutability policy.
STORAGE_AUDIT_CONTAINER = os.environ.get("STORAGE_AUDIT_CONTAINER", "portal-audit")
STORAGE_UPLOAD_SAS_MINUTES = int(os.environ.get("STORAGE_UPLOAD_SAS_MINUTES", "30"))
STORAGE_TASK_SAS_HOURS = float(os.environ.get("STORAGE_TASK_SAS_HOURS", str(7 * 24)))

# Submissions (batchsync/submit.py). Container SAS URLs (create, write) that tasks upload their stdout/stderr and
# their output files to; empty means the portal signs a write-only SAS for STORAGE_LOGS_CONTAINER /
# STORAGE_OUTPUTS_CONTAINER itself (and leaves the upload rules out while that container cannot be reached).
# The lease is how long a worker may hold a submission between two recorded steps, so also how long a killed
# worker delays the re-drive (every 15 s): 45 s resumes it within a minute. Progress is recorded every chunk.
SUBMISSION_LOGS_CONTAINER_URL = os.environ.get("SUBMISSION_LOGS_CONTAINER_URL", "")
SUBMISSION_OUTPUTS_CONTAINER_URL = os.environ.get("SUBMISSION_OUTPUTS_CONTAINER_URL", "")
SUBMISSION_LEASE_SECONDS = float(os.environ.get("SUBMISSION_LEASE_SECONDS", "45"))
SUBMISSION_CHUNK_SIZE = int(os.environ.get("SUBMISSION_CHUNK_SIZE", "500"))
# addtaskcollection requests (100 tasks each) one submission keeps in flight (batchsync/submit.py says why 8).
SUBMISSION_MAX_CONCURRENCY = int(os.environ.get("SUBMISSION_MAX_CONCURRENCY", "8"))
# Browser uploads (portal/submit/uploads.py): at most this many bytes of files in one submission, and the largest CSV
# a sweep is read from (the server reads it whole to make one task per row).
SUBMISSION_MAX_UPLOAD_BYTES = int(os.environ.get("SUBMISSION_MAX_UPLOAD_BYTES", str(5 * 1000 ** 3)))
SUBMISSION_MAX_CSV_BYTES = int(os.environ.get("SUBMISSION_MAX_CSV_BYTES", str(20 * 1000 ** 2)))
# Where people open the portal; dev_bootstrap lets these origins upload straight to storage (CORS).
PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000")

# /readyz (portal/readiness.py): how long each dependency's check may wait, without retries.
READINESS_TIMEOUT_SECONDS = float(os.environ.get("READINESS_TIMEOUT_SECONDS", "2"))

# Celery: configured in batchsync/celery.py; only the broker lives here.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Every key the portal keeps in Redis (queues, locks, cache) starts with this, so installations sharing one Redis,
# or a test run beside `make dev`, never read each other's messages, locks or cached tails.
REDIS_KEY_PREFIX = os.environ.get("REDIS_KEY_PREFIX", "")
if os.environ.get("CELERY_BROKER_URL"):
    CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
    BROKER_REASON = "CELERY_BROKER_URL is set"
elif DEBUG:
    # Only a development machine may fall back: in production, several machines sharing
    # one queue must not silently split into one private queue each.
    CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS, BROKER_REASON = celery_broker(
        REDIS_URL, VAR_DIR / "broker"
    )
else:
    CELERY_BROKER_URL, CELERY_BROKER_TRANSPORT_OPTIONS = REDIS_URL, {}
    BROKER_REASON = "REDIS_URL, without a fallback (DJANGO_DEBUG is off)"
if REDIS_KEY_PREFIX and CELERY_BROKER_URL.startswith("redis"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {**CELERY_BROKER_TRANSPORT_OPTIONS, "global_keyprefix": REDIS_KEY_PREFIX}
# BROKER_REASON is reported by `manage.py dev_bootstrap`, once, rather than by
# every process that imports these settings.

# The cache (the shared live tail, search results): Redis, shared by every web process; CACHE_URL if it must live
# apart from the broker. Only DEBUG falls back to a per-process memory cache, like the broker. CACHE_REASON is
# reported by dev_bootstrap.
CACHES, CACHE_REASON = cache_settings(os.environ.get("CACHE_URL") or REDIS_URL, debug=DEBUG,
                                     key_prefix=REDIS_KEY_PREFIX)


# --- Security and sign-in ---------------------------------------------------------------------------------------
# With DJANGO_DEBUG off these are production settings and `manage.py check --deploy` passes without a warning
# (tests/portal/test_security.py runs it). The test suite serves plain HTTP, so tests/settings.py turns only the
# HTTPS-only parts off.

# Served over HTTPS: redirect plain HTTP, Secure cookies, HSTS. DJANGO_HTTPS=0 is for a deployment without TLS.
HTTPS = env_bool("DJANGO_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600))) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
# Only makes the site eligible for browsers' preload lists; nothing is listed until someone submits the domain.
SECURE_HSTS_PRELOAD = HTTPS and env_bool("DJANGO_HSTS_PRELOAD", default=True)
if TRUSTED_PROXY_COUNT > 0:
    # Our proxy terminates TLS and says so; without a proxy of ours the header is the client's and is ignored.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Django's defaults, written out because they are part of what the portal promises: no framing, no MIME sniffing,
# referrers only to ourselves, cookies JavaScript cannot read (the CSRF cookie stays readable: htmx sends the token
# from the page, not the cookie, so it could be HttpOnly too, but nothing needs that).
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"
# A refused form says what to do (reload and send again) in the portal's layout, not Django's page for developers.
CSRF_FAILURE_VIEW = "portal.errors.csrf_failure"
# A shared dashboard is left open on screens: a session lasts a working day, not Django's two weeks.
SESSION_COOKIE_AGE = int(os.environ.get("DJANGO_SESSION_SECONDS", str(12 * 3600)))
# Sessions are written to the database and read from the shared cache first: a page costs no query for them, and a
# Redis that was emptied or does not answer falls back to the database rather than signing everyone out.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# Request bodies. Files go from the browser straight to Blob Storage, so what reaches Django is forms: their fields
# are kilobytes, and the largest file posted here is a sweep's CSV (SUBMISSION_MAX_CSV_BYTES). Fields past 2 MiB are
# refused outright; an uploaded file past 2.5 MiB is written to a temporary file instead of held in memory, so one
# request's memory stays bounded whatever its size. The proxy caps the whole body (client_max_body_size).
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_NUMBER_FIELDS = 1000
DATA_UPLOAD_MAX_NUMBER_FILES = 100
# Error reports (DEBUG pages, error e-mails) also hide connection strings and container URLs, which carry keys.
DEFAULT_EXCEPTION_REPORTER_FILTER = "portal.error_reports.SecretsExceptionReporterFilter"


def blob_origin(connection_string: str) -> str | None:
    """The scheme://host[:port] of the Blob endpoint in a storage connection string: the browser uploads there."""
    parts = dict(item.split("=", 1) for item in connection_string.split(";") if "=" in item)
    endpoint = parts.get("BlobEndpoint")
    if not endpoint and parts.get("AccountName"):
        protocol = parts.get("DefaultEndpointsProtocol", "https")
        endpoint = f"{protocol}://{parts['AccountName']}.blob.{parts.get('EndpointSuffix', 'core.windows.net')}"
    if not endpoint:
        return None
    split = urlsplit(endpoint)
    return f"{split.scheme}://{split.netloc}"


# Content Security Policy (django-csp 4; built into Django from 6.0). Scripts only from our own origin: no inline
# script, no eval, so htmx runs with allowEval off (base.html) and injected markup cannot run code even through
# hx-* attributes. Styles allow 'unsafe-inline' because progress bars, the throughput chart and node bars set their
# widths in style attributes, and htmx adds its indicator style; CSS cannot run script, and autoescaping keeps
# Batch-sourced text out of markup. Applied in development too, so an inline script fails on the first page view.
_blob_origin = (blob_origin(f"BlobEndpoint={AZURE_STORAGE_ACCOUNT_URL}") if AZURE_STORAGE_ACCOUNT_URL
                else blob_origin(AZURE_STORAGE_CONNECTION_STRING))
_csp_connect = ["'self'"] + [origin for origin in [_blob_origin] if origin]
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        # The submit form uploads files straight to Blob Storage with a short SAS.
        "connect-src": _csp_connect,
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Sign-in: local accounts always; django-axes counts failures per username and address. The 5th failure within
# 15 minutes locks that username at that address for 15 minutes (the person sees why); the same username from
# elsewhere, and other people behind the same proxy, can still sign in.
AUTHENTICATION_BACKENDS = [
    "portal.accounts.throttle.LoginThrottleBackend",
    # Django's ModelBackend, with each person's permissions kept in the shared cache (two queries less per page).
    "portal.accounts.permissions.CachedPermissionsBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# ...and an address, across usernames (password spraying), after this many (portal/accounts/throttle.py).
LOGIN_ADDRESS_FAILURE_LIMIT = int(os.environ.get("LOGIN_ADDRESS_FAILURE_LIMIT", "30"))
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
# Passwords never reach the attempt log; axes keeps the username, address, user agent and path.
AXES_SENSITIVE_PARAMETERS = ["password"]
# Behind our proxies the lock is keyed on the client's address, read the same way as for the audit history
# (TRUSTED_PROXY_COUNT), not on the proxy's, which would lock a username for everyone.
AXES_CLIENT_IP_CALLABLE = "portal.audit.middleware.client_ip"

# Single sign-on with Microsoft Entra ID (OpenID Connect, portal/accounts/oidc.py), when OIDC_RP_CLIENT_ID is set.
# Directory groups map to roles, "<group object id>=<role>,..." (Viewer, Submitter, Operator, Admin), and optionally
# to teams, "<group object id>=<team name>,...", on every sign-in.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_TENANT_ID = os.environ.get("OIDC_TENANT_ID", "")
_entra = f"https://login.microsoftonline.com/{OIDC_TENANT_ID or 'organizations'}"
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", f"{_entra}/oauth2/v2.0/authorize")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", f"{_entra}/oauth2/v2.0/token")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", f"{_entra}/discovery/v2.0/keys")
# Not called (the ID token carries the claims, see portal/accounts/oidc.py) but required by mozilla-django-oidc.
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "https://graph.microsoft.com/oidc/userinfo")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = "openid email profile"
OIDC_USE_PKCE = True
OIDC_TIMEOUT = 10
OIDC_GROUP_ROLES = os.environ.get("OIDC_GROUP_ROLES", "")
OIDC_GROUP_TEAMS = os.environ.get("OIDC_GROUP_TEAMS", "")
# mozilla-django-oidc redirects to this as written (no URL name lookup).
LOGIN_REDIRECT_URL_FAILURE = "/login/"
if OIDC_ENABLED:
    # A malformed mapping stops the start: better than signing everyone in without a role.
    roles.parse_group_mapping(OIDC_GROUP_ROLES, allowed=roles.ROLE_NAMES)
    roles.parse_group_mapping(OIDC_GROUP_TEAMS)
    AUTHENTICATION_BACKENDS.append("portal.accounts.oidc.EntraIDBackend")

# "Why is it waiting?" on job, task and submission pages and the dashboard (portal/jobs/waiting.py). On by default;
# bench/pages_waiting.py turns it off to time the same page without it.
WAITING_REASONS = env_bool("WAITING_REASONS", default=True)
