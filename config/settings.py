"""Atelier settings: one module, driven by environment variables.

With nothing set, Atelier runs on embedded defaults that need no server: SQLite and Celery's
filesystem transport under `var/`, media under `var/media`, the offline `local` provider.
One URL variable switches each server on (`DATABASE_URL`, `CELERY_BROKER_URL`, `AWS_STORAGE_BUCKET_NAME`).
`DEBUG=false` is production: then `SECRET_KEY` and `ALLOWED_HOSTS` must be given.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.content_security import page_policy, storage_origins
from config.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_networks,
    env_provider_limits,
    env_rate,
    env_str,
)
from config.storage import bucket_storage

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("ATELIER_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)

if DEBUG:
    SECRET_KEY = env_str("SECRET_KEY", "insecure-development-key-change-me-" + "x" * 20)
else:
    # A production secret has no default.
    SECRET_KEY = env_str("SECRET_KEY", required=True)
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("Environment variable SECRET_KEY must be at least 50 characters.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Environment variable ALLOWED_HOSTS must be set when DEBUG is false.")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",  # django-csp: its system checks (the policy itself comes from its middleware)
    "axes",  # login lockout: its attempts table and the admin pages to read and reset it
    "accounts",
    "credits",
    "generation",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise, which answers static files itself: the policy is for pages.
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.cache_control.PrivateCacheControlMiddleware",  # needs request.user
    "django.contrib.messages.middleware.MessageMiddleware",
    "config.timezones.PersonTimezoneMiddleware",  # times on pages in the person's zone
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a login refused for lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
# The web process (Procfile): an ASGI server whose event loop holds the event streams, and
# WEB_THREADS threads per process for every other request (pages, API, admin), which Django
# answers synchronously as under a threaded WSGI server (config/asgi.py).
ASGI_APPLICATION = "config.asgi.application"
WEB_THREADS = env_int("WEB_THREADS", 4, minimum=1)

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
                "generation.pages.context.page_context",
                "webhooks.context.webhook_notice",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
_default_database_url = f"sqlite:///{VAR_DIR / 'atelier.sqlite3'}"
try:
    DATABASES = {
        "default": dj_database_url.parse(
            env_str("DATABASE_URL", _default_database_url),
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
            conn_health_checks=True,
        )
    }
except ValueError as error:
    raise ImproperlyConfigured(f"Environment variable DATABASE_URL is malformed: {error}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker's threads and the web process write concurrently: wait for the lock instead of
    # failing, and let readers go on while one writer works.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Every wait is bounded: a database that does not answer fails a connection attempt in
    # seconds (the job pauses, the request errors) instead of hanging a thread, and a dead peer
    # is noticed by TCP keepalives.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": 5,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # Which process a connection belongs to, in pg_stat_activity (web, worker, beat...).
            "application_name": env_str("DATABASE_APPLICATION_NAME", "atelier"),
        }
    )
    # No query waits forever (0 turns it off, as the release step does for migrations).
    _statement_timeout = env_int("DATABASE_STATEMENT_TIMEOUT_SECONDS", 60, minimum=0)
    if _statement_timeout:
        DATABASES["default"]["OPTIONS"]["options"] = (
            f"-c statement_timeout={_statement_timeout * 1000} -c lock_timeout={_statement_timeout * 1000}"
        )

# --- Cache (rate limits) ------------------------------------------------------------------------
# The cache holds the API's and sign-up's rate-limit counters, shared by every web process:
# files under var/ on the embedded default (one machine), Redis in production (`CACHE_URL`).
# Every wait is bounded: a Redis that is down or hangs answers within half a second, and the
# rate limits then let requests through (config/throttles.py) rather than fail them.
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "config.cache.RedisCache",  # Django's, with one client per pool
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "atelier",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
elif CACHE_URL:
    raise ImproperlyConfigured("Environment variable CACHE_URL must be a redis:// or rediss:// URL.")
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Files ------------------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Without collectstatic (make run), WhiteNoise serves straight from the apps' static folders.
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))

AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")
# Where the bucket lives; the Content-Security-Policy allows the hosts its signed URLs name.
_s3_endpoint_url = env_str("AWS_S3_ENDPOINT_URL", "")
_s3_region_name = env_str("AWS_S3_REGION_NAME", "")
if AWS_STORAGE_BUCKET_NAME:
    # S3 or an S3-compatible store (R2, MinIO) via django-storages (config/storage.py); files
    # are private and served through short-lived signed URLs. A minute at least: a <video> keeps
    # reading (seeking) from the signed URL it was redirected to for as long as the clip plays.
    _default_storage = bucket_storage(
        bucket=AWS_STORAGE_BUCKET_NAME,
        endpoint_url=_s3_endpoint_url,
        region=_s3_region_name,
        querystring_expire=env_int("AWS_QUERYSTRING_EXPIRE", 3600, minimum=60),
    )
else:
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
STORAGES = {
    "default": _default_storage,
    # WhiteNoise serves static files from the web process, compressed and cache-busted.
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Uploads ----------------------------------------------------------------------------------
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 40_000_000, minimum=1)
# The memory decoding a picture takes (generation/services/decoding.py: width x height x the bytes
# Pillow holds per pixel of its mode, 4 for RGB and RGBA, 2 for 16-bit grey, 1 for grey and
# palette; plus a progressive JPEG's coefficient buffer; 4.5 times the pixels for WebP), as a
# small PNG can hide a huge bitmap. Every accepted upload is decoded once, within it. 128 MB
# accepts a 12-megapixel JPEG photo (46 MB) and refuses a 6300 x 6300 RGBA picture (152 MB).
UPLOAD_MAX_DECODED_MB = env_int("UPLOAD_MAX_DECODED_MB", 128, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 1024 * 1024
# An API request's JSON body (a job is a few hundred bytes): a larger one is a 413 before it is
# read, so a client cannot make the web process hold megabytes of JSON (config/parsers.py).
API_JSON_MAX_BYTES = env_int("API_JSON_MAX_BYTES", 64 * 1024, minimum=1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_HANDLERS = [
    "generation.uploads.SizeLimitUploadHandler",  # drops a too-large file before it is stored
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: its WWW-Authenticate header makes an anonymous request a 401, not a 403.
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsTeamMember"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 20,
    # Every operation's error responses, in the one error shape (config/schema.py).
    "DEFAULT_SCHEMA_CLASS": "config.schema.ApiAutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, bounded in size and depth (config/parsers.py); the upload view takes multipart
    # itself. No form bodies: the views would refuse them and the schema would advertise them.
    "DEFAULT_PARSER_CLASSES": ["config.parsers.BoundedJSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # How many proxies in front of the web process append to X-Forwarded-For. The client's
    # address (rate limits, login lockout) is read that many hops from the right; with 0 the
    # header is ignored, since anyone can send one.
    "NUM_PROXIES": env_int("TRUSTED_PROXY_COUNT", 0, minimum=0),
    # Every API request is counted per key (or browser session) and per person; the scope of a
    # view's method and its rate: config/throttles.py and RATE_LIMIT_* below.
    "DEFAULT_THROTTLE_CLASSES": ["config.throttles.PerKeyRateThrottle", "config.throttles.PerUserRateThrottle"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Atelier API",
    "DESCRIPTION": "Durable background image generation: jobs, progress, collection.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The docs page's assets come from the installed sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Two models have a "kind" choice field; name their enums apart in the schema.
    "ENUM_NAME_OVERRIDES": {
        "JobKindEnum": "generation.models.GenerationJob.Kind",
        "LedgerEntryKindEnum": "credits.models.LedgerEntry.Kind",
        "ApiKeyStateEnum": "accounts.models.ApiKey.State",
        "JobEventTypeEnum": "generation.models.JobEvent.Type",
    },
}

# --- Celery -----------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for _folder in ("queue", "processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A redelivery after this many seconds is harmless: the job's lease fences a second runner.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60),
        "socket_connect_timeout": 3,
        "socket_timeout": 5,
    }
# Results are not used: the job row is the only source of truth.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 60 * 60, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 55 * 60, minimum=5)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A submit must not hang when the broker is down or hangs: every publish is bounded by
# PUBLISH_TIMEOUT_SECONDS (generation/services/dispatch.py) and not retried; the rescuer
# publishes again what did not make it.
CELERY_TASK_PUBLISH_RETRY = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"
RESCUE_INTERVAL_SECONDS = env_float("RESCUE_INTERVAL_SECONDS", 5.0, minimum=0.5)
# Jobs and the rescuer have queues of their own: the rescuer's process consumes only `rescue`, so
# a backlog of jobs can never delay it (Procfile: worker -Q jobs, rescuer -Q rescue).
CELERY_TASK_DEFAULT_QUEUE = "jobs"
CELERY_TASK_ROUTES = {
    "generation.tasks.run_generation_job": {"queue": "jobs"},
    # Suspects run in the quarantine worker, one job at a time (Procfile: quarantine -Q suspects).
    "generation.tasks.run_suspect_job": {"queue": "suspects"},
    "generation.tasks.rescue_stale_jobs": {"queue": "rescue"},
    # Webhook senders have a process of their own (Procfile: webhooks -Q webhooks): a slow
    # receiver never holds a job's slot, and a backlog of jobs never delays a delivery.
    "webhooks.tasks.deliver_webhook": {"queue": "webhooks"},
    "webhooks.tasks.dispatch_due_webhooks": {"queue": "webhooks"},
}
CELERY_BEAT_SCHEDULE = {
    "rescue-stale-jobs": {
        "task": "generation.tasks.rescue_stale_jobs",
        "schedule": RESCUE_INTERVAL_SECONDS,
        # A pass that could not run within its interval is superseded by the next one.
        "options": {"expires": RESCUE_INTERVAL_SECONDS, "queue": "rescue"},
    },
}

# --- Webhooks and event streams -----------------------------------------------------------------
# Absolute links in webhook payloads (outputs, the job itself): where people reach this Atelier.
# In production it defaults to the first of ALLOWED_HOSTS over HTTPS (a wildcard cannot be linked to).
_default_public_host = next((host.lstrip(".") for host in ALLOWED_HOSTS if host != "*"), "")
PUBLIC_BASE_URL = env_str(
    "PUBLIC_BASE_URL",
    "http://127.0.0.1:8000" if DEBUG or not _default_public_host else f"https://{_default_public_host}",
).rstrip("/")
# Deliveries to private, loopback, link-local and other non-public addresses are refused unless
# this is true (tests and development on one machine); checked on the address actually connected to.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
# One attempt's bound: connecting and reading the receiver's answer, each.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.5, maximum=60)
# Waits before the second, third... attempt after a timeout, connection error, 5xx or 429 (a
# Retry-After longer than the wait is honoured): about a day in all, as the Standard Webhooks
# guidance suggests. Other 4xx answers are not retried.
try:
    WEBHOOK_RETRY_SCHEDULE = [
        float(value)
        for value in env_list("WEBHOOK_RETRY_SCHEDULE", ["5", "300", "1800", "7200", "18000", "36000", "36000"])
    ]
except ValueError:
    raise ImproperlyConfigured(
        "Environment variable WEBHOOK_RETRY_SCHEDULE must be numbers of seconds, comma-separated."
    ) from None
# An endpoint is disabled automatically when every attempt has failed for this long and at
# least this many attempts in a row; the team is told on its pages.
WEBHOOK_DISABLE_AFTER_SECONDS = env_float("WEBHOOK_DISABLE_AFTER_SECONDS", 24 * 3600.0, minimum=0)
WEBHOOK_DISABLE_AFTER_FAILURES = env_int("WEBHOOK_DISABLE_AFTER_FAILURES", 15, minimum=1)
# The sweeper publishes due deliveries (first tries whose wake-up was lost, retries after their
# backoff) every interval; a delivery whose task was published is published again only after
# WEBHOOK_REDISPATCH_AFTER_SECONDS.
WEBHOOK_SWEEP_INTERVAL_SECONDS = env_float("WEBHOOK_SWEEP_INTERVAL_SECONDS", 5.0, minimum=0.2)
WEBHOOK_REDISPATCH_AFTER_SECONDS = env_float("WEBHOOK_REDISPATCH_AFTER_SECONDS", 30.0, minimum=0.5)
# How often an open event stream reads the events table: its only source on the embedded default
# (no Redis), a safety net beside Redis pub/sub.
EVENTS_POLL_SECONDS = env_float("EVENTS_POLL_SECONDS", 2.0, minimum=0.1)
# With Redis pub/sub waking the streams, the table is still read this often: a wake-up lost
# while Redis was away costs a stream at most this long.
EVENTS_SAFETY_POLL_SECONDS = env_float("EVENTS_SAFETY_POLL_SECONDS", 15.0, minimum=0.1)
# A comment line on a stream after this long without a message, so that proxies keep it open.
EVENTS_HEARTBEAT_SECONDS = env_float("EVENTS_HEARTBEAT_SECONDS", 15.0, minimum=0.1)
# A stream ends after about this long (the client reconnects with Last-Event-ID, missing
# nothing), so no connection lives for ever on one process.
EVENTS_STREAM_MAX_SECONDS = env_float("EVENTS_STREAM_MAX_SECONDS", 1800.0, minimum=1)
CELERY_BEAT_SCHEDULE["dispatch-due-webhooks"] = {
    "task": "webhooks.tasks.dispatch_due_webhooks",
    "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
    "options": {"expires": WEBHOOK_SWEEP_INTERVAL_SECONDS, "queue": "webhooks"},
}

# --- Retention ----------------------------------------------------------------------------------
# A sweep (generation/services/retention.py) removes what nothing needs any more; it runs on the
# `maintenance` queue (Procfile: webhooks -Q webhooks,maintenance) every interval, and stops
# starting new work once it has run for one interval, so two sweeps never pile up.
RETENTION_INTERVAL_SECONDS = env_float("RETENTION_INTERVAL_SECONDS", 3600.0, minimum=1.0)
# A finished job's stored zip goes this long after the job finished; the download builds the zip
# again from the images whenever it is asked for (0: at the next sweep).
RETENTION_ZIP_DAYS = env_float("RETENTION_ZIP_DAYS", 7.0, minimum=0.0)
# A stored file that no output, poster, zip, pending file or upload names (a run that died between
# writing and recording it) goes once it is this old. It must outlast the gap between a file's
# write and its record (seconds), hence at least an hour.
RETENTION_ORPHAN_GRACE_HOURS = env_float("RETENTION_ORPHAN_GRACE_HOURS", 24.0, minimum=1.0)
# An upload that no job uses and no studio tab's draft holds goes, row and file, this long after
# it was uploaded.
RETENTION_UPLOAD_DAYS = env_float("RETENTION_UPLOAD_DAYS", 30.0, minimum=1.0)
# A live preview (a file under previews/) that no running job shows goes once it is this old.
RETENTION_PREVIEW_GRACE_HOURS = env_float("RETENTION_PREVIEW_GRACE_HOURS", 1.0, minimum=0.1)
# Job events (the outbox) and finished webhook deliveries, with their attempts, go this long after
# they were written; a delivery still pending is kept, and so is its event.
RETENTION_EVENT_DAYS = env_float("RETENTION_EVENT_DAYS", 30.0, minimum=1.0)
CELERY_TASK_ROUTES["generation.tasks.sweep_retention"] = {"queue": "maintenance"}
CELERY_BEAT_SCHEDULE["sweep-retention"] = {
    "task": "generation.tasks.sweep_retention",
    "schedule": RETENTION_INTERVAL_SECONDS,
    # A sweep that could not start within its interval is superseded by the next one.
    "options": {"expires": RETENTION_INTERVAL_SECONDS, "queue": "maintenance"},
}

# --- Generation -------------------------------------------------------------------------------
GENERATION_DEFAULT_PROVIDER = env_choice(
    "GENERATION_DEFAULT_PROVIDER", "local", {"local", "openai", "gemini", "vertex"}
)
GENERATION_MAX_OUTPUTS = 10
# Per-provider (and per-model) request rates and concurrent calls, shared by every worker
# (generation/services/limiter.py): `openai=60/min:20,openai/gpt-image-1-mini=120/min`;
# `gemini=-:10` limits only concurrent jobs. A call keeps both its model's and its provider's
# limits; calls are paced evenly (60/min is one a second), since providers enforce per-minute
# limits over shorter periods too. The state is shared through Redis (CACHE_URL, else a redis
# broker) or, without Redis, the database. Empty (the default) limits nothing and costs nothing:
# the right numbers are the account's own (a provider's tiers differ a thousandfold), and a
# provider without a limit here is still protected by its 429s, retried with backoff.
# {(provider, model or ""): (requests per minute or None, concurrent calls or None)}
PROVIDER_LIMITS = env_provider_limits("PROVIDER_LIMITS", "")
# A call that must wait this long or less for its turn waits in its worker's thread; a longer wait
# puts the job back in the queue until its turn (not counted as an attempt), so the worker's slot
# runs another provider's job meanwhile, and the scheduler passes over the provider's jobs.
PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS = env_float("PROVIDER_LIMIT_MAX_INLINE_WAIT_SECONDS", 2.0, minimum=0.0)
# A 429 under a limit halves that limit's rate for every worker (no call before its Retry-After);
# the slowdown then halves every this many seconds, back towards the configured rate.
PROVIDER_LIMIT_RECOVERY_SECONDS = env_float("PROVIDER_LIMIT_RECOVERY_SECONDS", 60.0, minimum=0.1)
# A claimed job's lease; the worker renews it every third of this while it works.
JOB_LEASE_SECONDS = env_float("JOB_LEASE_SECONDS", 30.0, minimum=2.0)
# A queued job that could run but that no worker claimed within this window, while workers have
# free slots, lost its wake-up message: the rescuer publishes one (generation/services/rescue.py).
JOB_REDISPATCH_AFTER_SECONDS = env_float("JOB_REDISPATCH_AFTER_SECONDS", 30.0, minimum=1.0)
# Who caused a fault decides what it costs (docs/architecture.md, "Faults"). A run that ends with
# its worker's death and no new image makes the job a suspect, which then runs alone on its
# worker; this many such deaths while alone fail it as a poison job.
JOB_POISON_CRASHES = env_int("JOB_POISON_CRASHES", 3, minimum=1)
# Our own infrastructure (database, storage, a hung step) pauses a job with backoff, never fails
# it, for this long without a new image; then it fails with INFRASTRUCTURE_OUTAGE.
JOB_OUTAGE_BUDGET_SECONDS = env_float("JOB_OUTAGE_BUDGET_SECONDS", 6 * 60 * 60, minimum=1.0)
JOB_PAUSE_BASE_SECONDS = env_float("JOB_PAUSE_BASE_SECONDS", 2.0, minimum=0.0)
JOB_PAUSE_MAX_SECONDS = env_float("JOB_PAUSE_MAX_SECONDS", 60.0, minimum=0.0)
# How many times one image is retried after a transient provider error.
JOB_MAX_IMAGE_RETRIES = env_int("JOB_MAX_IMAGE_RETRIES", 5, minimum=0)
JOB_RETRY_BASE_SECONDS = env_float("JOB_RETRY_BASE_SECONDS", 1.0, minimum=0.0)
JOB_RETRY_MAX_SECONDS = env_float("JOB_RETRY_MAX_SECONDS", 60.0, minimum=0.0)
# The whole job's time budget for one run, enforced by the pipeline (the thread pool cannot kill a
# task): checked between images and bounding every step.
JOB_TIME_LIMIT_SECONDS = env_float("JOB_TIME_LIMIT_SECONDS", 30 * 60, minimum=5.0)
# How often a worker's lifeline looks for cancels (and renews leases, every third of the lease).
JOB_CANCEL_POLL_SECONDS = env_float("JOB_CANCEL_POLL_SECONDS", 1.0, minimum=0.1)
# One provider call; the pipeline abandons a call that overruns it, whatever the provider does.
PROVIDER_TIMEOUT_SECONDS = env_float("PROVIDER_TIMEOUT_SECONDS", 120.0, minimum=1.0)
# A job's estimated peak memory (generation/services/inputs.py): its largest input picture being
# decoded and downsized, on top of its provider's working memory and its prepared inputs. A job
# over it is refused at submit, or fails with INPUT_TOO_LARGE before a worker decodes anything.
# By default it is what the largest accepted upload needs: its decoded pixels plus 96 MB for its
# file (10 MB at most), the downsizing (32 MB) and the local provider at work (48 MB, and 4 MB a
# prepared input). That is 224 MB, which refuses older, larger uploads such as a 6320 x 6320
# RGBA source (about 237 MB).
JOB_MEMORY_CEILING_MB = env_int("JOB_MEMORY_CEILING_MB", UPLOAD_MAX_DECODED_MB + 96, minimum=16)
# What one worker process may spend at once on decoding input images at full size; a decode
# waits for its share. Sized for a 2 GB worker of 16 threads: 16 jobs at work (about 60 MB each
# besides their decodes) and the process itself leave room for two of the largest decodes.
WORKER_DECODE_BUDGET_MB = env_int("WORKER_DECODE_BUDGET_MB", 512, minimum=16)
# What one web process may spend at once on decoding uploads (each is decoded once, to check it):
# every gunicorn thread could otherwise decode an upload of UPLOAD_MAX_DECODED_MB at the same
# moment. 384 MB lets three of the largest decode together; an upload that finds no room within
# a few seconds is answered 503 SERVER_BUSY with Retry-After, and nothing is stored.
WEB_DECODE_BUDGET_MB = env_int("WEB_DECODE_BUDGET_MB", 384, minimum=16)
# One storage write (an image, a zip) and one broker publish.
STORAGE_TIMEOUT_SECONDS = env_float("STORAGE_TIMEOUT_SECONDS", 30.0, minimum=0.5)
PUBLISH_TIMEOUT_SECONDS = env_float("PUBLISH_TIMEOUT_SECONDS", 1.0, minimum=0.1)
LOCAL_PROVIDER_LATENCY_MS = env_int("LOCAL_PROVIDER_LATENCY_MS", 1500, minimum=0)
LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE = env_float(
    "LOCAL_PROVIDER_TRANSIENT_FAILURE_RATE", 0.0, minimum=0.0, maximum=1.0
)
# Demos and tests: refuse every output from this image number (1-based) on; 0 is off.
LOCAL_PROVIDER_REFUSE_FROM_IMAGE = env_int("LOCAL_PROVIDER_REFUSE_FROM_IMAGE", 0, minimum=0)
# Fault drills only: a prompt with this word kills its worker process (as a native crash would).
# Empty (the default) is off.
LOCAL_PROVIDER_CRASH_WORD = env_str("LOCAL_PROVIDER_CRASH_WORD", "")
# Fault drills only: the first call for each image of a prompt with this word blocks for
# LOCAL_PROVIDER_HANG_SECONDS, ignoring its timeout (a wedged connection). Empty is off.
LOCAL_PROVIDER_HANG_WORD = env_str("LOCAL_PROVIDER_HANG_WORD", "")
LOCAL_PROVIDER_HANG_SECONDS = env_float("LOCAL_PROVIDER_HANG_SECONDS", 60.0, minimum=0.0)
# Live previews of the local provider: a small blurred version of each image halfway through its
# latency, shown in the studio until the image arrives (generation/services/previews.py).
LOCAL_PROVIDER_PREVIEWS = env_bool("LOCAL_PROVIDER_PREVIEWS", True)
# Providers (generation/providers/catalog.py lists their models). Each is offered only when its
# credentials are set. The SDKs read their own base-URL variables (OPENAI_BASE_URL,
# GOOGLE_GEMINI_BASE_URL, GOOGLE_VERTEX_BASE_URL) from the environment.
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_DEFAULT_MODEL = env_str("OPENAI_DEFAULT_MODEL", "gpt-image-2")
# Live previews from OpenAI: how many partial images (0-3) each image is streamed with; 0 asks for
# the plain JSON answer and shows none. OpenAI bills each partial image as 100 more image output
# tokens (Atelier's price per image stays the same; the output's provider report shows the usage).
OPENAI_PARTIAL_IMAGES = int(env_choice("OPENAI_PARTIAL_IMAGES", "2", {"0", "1", "2", "3"}))
GEMINI_API_KEY = env_str("GEMINI_API_KEY", "")
GEMINI_DEFAULT_MODEL = env_str("GEMINI_DEFAULT_MODEL", "gemini-2.5-flash-image")
# Vertex AI (Imagen and Veo): an express-mode API key, or a project and location with
# application default credentials.
VERTEX_API_KEY = env_str("VERTEX_API_KEY", "")
GOOGLE_CLOUD_PROJECT = env_str("GOOGLE_CLOUD_PROJECT", "")
GOOGLE_CLOUD_LOCATION = env_str("GOOGLE_CLOUD_LOCATION", "")
VERTEX_DEFAULT_MODEL = env_str("VERTEX_DEFAULT_MODEL", "imagen-4.0-generate-001")
# How often a worker asks how a long-running operation (a Veo clip) is doing, and how long one
# may run before the job gives up on it (it is not charged then).
PROVIDER_POLL_SECONDS = env_float("PROVIDER_POLL_SECONDS", 5.0, minimum=0.05)
PROVIDER_OPERATION_TIMEOUT_SECONDS = env_float("PROVIDER_OPERATION_TIMEOUT_SECONDS", 15 * 60, minimum=1.0)

# --- Sign-up and login ------------------------------------------------------------------------
# Credits a new sign-up's personal team receives once they have verified their email. Free
# credits are money: production (DEBUG=false) grants none unless told to.
SIGNUP_CREDITS = env_int("SIGNUP_CREDITS", 100 if DEBUG else 0, minimum=0)
# Sign-ups, verification resends and password resets from one client address, as a DRF rate
# ("10/hour"): each sends a mail, so a script can neither mint accounts nor flood an inbox.
RATE_LIMIT_SIGNUP = env_rate("RATE_LIMIT_SIGNUP", "10/hour")
# A verification link (accounts/tokens.py) lives as long as a password-reset link:
# PASSWORD_RESET_TIMEOUT, Django's default of 3 days.

# Mail (verification links, password resets). The console backend, the default, prints each
# mail to the web process's output, which is all the embedded default needs; production sets
# EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend, and then the server and its
# credentials have no default.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Atelier <atelier@localhost>")
if EMAIL_BACKEND == "django.core.mail.backends.smtp.EmailBackend":
    EMAIL_HOST = env_str("EMAIL_HOST", required=True)
    EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", required=True)
    EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", required=True)
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
    # A real server refuses mail from atelier@localhost; say who the mail comes from.
    DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", required=True)
# A mail server that does not answer fails the send (logged) within seconds, not the request.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT_SECONDS", 10, minimum=1)

# Login lockout (django-axes, accounts/lockout.py): after LOGIN_FAILURE_LIMIT failed logins for
# one account, or from one client address, further logins there (even with the right password)
# are refused for LOGIN_COOLOFF_MINUTES, on /accounts/login/ and /admin/login/ alike.
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, minimum=1)
LOGIN_COOLOFF_MINUTES = env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1)
AUTHENTICATION_BACKENDS = [
    # First, as django-axes requires: it refuses a locked-out login before the password is checked.
    "accounts.lockout.LockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_COOLOFF_MINUTES)
# Two separate counters: one per account (guessing one password from many addresses) and one
# per address (trying many accounts from one address).
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
# The login forms' field is "username" (it holds the email); the lower-cased email is the account.
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "accounts.lockout.login_username"
# The client address as the rate limits read it (TRUSTED_PROXY_COUNT), not django-ipware's guess.
AXES_CLIENT_IP_CALLABLE = "accounts.lockout.client_address"
# The lockout page: status 429, how long it lasts, Retry-After.
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# A success must not wipe the counters: axes would delete every failure from that address too,
# so an attacker logging into their own account between guesses could guess forever.
AXES_RESET_ON_SUCCESS = False
# A lockout lasts LOGIN_COOLOFF_MINUTES from the failure that set it, as its page says: tries
# while locked out are refused without being counted, so they do not extend it.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False

# --- Quotas (accounts/quotas.py) ----------------------------------------------------------------
# What one team may hold at once; the admin overrides each per team (Team.quota_*).
QUOTA_ACTIVE_JOBS = env_int("QUOTA_ACTIVE_JOBS", 20, minimum=1)
# The fair scheduler runs at most this many of one team's jobs at once; the rest wait their turn
# (generation/services/scheduler.py). Not a refusal: a quota on waiting, overridable per team.
TEAM_MAX_RUNNING_JOBS = env_int("TEAM_MAX_RUNNING_JOBS", 3, minimum=1)
QUOTA_UPLOADS = env_int("QUOTA_UPLOADS", 500, minimum=1)
QUOTA_UPLOAD_MB = env_int("QUOTA_UPLOAD_MB", 1024, minimum=1)
QUOTA_STUDIO_TABS = env_int("QUOTA_STUDIO_TABS", 30, minimum=1)
QUOTA_DRAFT_KB = env_int("QUOTA_DRAFT_KB", 64, minimum=1)
# Live API keys one team may hold (accounts/services.py: api_key_create). Each is a standing
# credential that spends the team's credits; a bound keeps a runaway script from minting thousands.
API_KEYS_PER_TEAM = env_int("API_KEYS_PER_TEAM", 50, minimum=1)
# Webhook endpoints one team may have (webhooks/endpoints.py: endpoint_create). Every job event
# is fanned out to each of them in the event's transaction: a bound keeps that write small.
QUOTA_WEBHOOK_ENDPOINTS = env_int("QUOTA_WEBHOOK_ENDPOINTS", 10, minimum=1)

# --- Rate limits (API throttles) ----------------------------------------------------------------
# Requests per API key (or per browser session) as DRF rates ("30/min"; s, min, hour, day).
# Submits and retries hold credits; estimates run the model registry and the prompt builder;
# uploads store files; everything else reads. A refused request is a 429 with Retry-After.
RATE_LIMIT_SUBMIT = env_rate("RATE_LIMIT_SUBMIT", "30/min")  # also the studio's Generate button
RATE_LIMIT_ESTIMATE = env_rate("RATE_LIMIT_ESTIMATE", "120/min")
RATE_LIMIT_UPLOAD = env_rate("RATE_LIMIT_UPLOAD", "30/min")
# Webhook endpoints added or changed and deliveries sent again, API and settings page alike:
# a new or changed URL is resolved (a DNS lookup), and each "send again" is a POST to a URL the
# team chose, which must not turn Atelier into a way of flooding someone else's server.
RATE_LIMIT_WEBHOOK = env_rate("RATE_LIMIT_WEBHOOK", "30/min")
RATE_LIMIT_API = env_rate("RATE_LIMIT_API", "600/min")
# One person's requests across all their keys and sessions together may reach this many times
# each rate: a second key gives room (a deploy and a script side by side), fifty keys do not
# give fifty times the rate.
RATE_LIMIT_USER_FACTOR = env_int("RATE_LIMIT_USER_FACTOR", 2, minimum=1)

# --- Security ---------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie; harmless either way
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365, minimum=0)
    # HTTPS for every name under Atelier's host too, which is what Django's deploy check asks
    # for; turn it off when Atelier is served from a name whose subdomains still speak plain HTTP.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is opt-in: once browsers ship a domain in their preload list, taking it out
    # takes months, and it binds every subdomain of the registered domain, not only Atelier's.
    # The list asks for includeSubDomains and a max-age of at least a year.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if SECURE_HSTS_PRELOAD and not (SECURE_HSTS_INCLUDE_SUBDOMAINS and SECURE_HSTS_SECONDS >= 60 * 60 * 24 * 365):
        raise ImproperlyConfigured(
            "SECURE_HSTS_PRELOAD needs SECURE_HSTS_INCLUDE_SUBDOMAINS=true and SECURE_HSTS_SECONDS of a year or more."
        )
    # The deploy check warns about each of these left off; both are the operator's choice above,
    # so `check --deploy --fail-level WARNING` stays usable as a gate for everything else.
    SILENCED_SYSTEM_CHECKS = [
        *([] if SECURE_HSTS_PRELOAD else ["security.W021"]),
        *([] if SECURE_HSTS_INCLUDE_SUBDOMAINS else ["security.W005"]),
    ]

# --- Content-Security-Policy (config/content_security.py) ---------------------------------------
# Pages take scripts, styles and fonts from Atelier alone (no inline code, no eval); images and
# clips from Atelier and from the bucket its signed URLs redirect to.
_content_security_policy = {
    "DIRECTIVES": page_policy(
        media_origins=storage_origins(
            bucket=AWS_STORAGE_BUCKET_NAME,
            endpoint_url=_s3_endpoint_url,
            region=_s3_region_name,
        )
    )
}
# Report-only sends the same policy as Content-Security-Policy-Report-Only: the browser reports
# what it would block (in its console) and blocks nothing; a way to try a change of storage host.
if env_bool("CSP_REPORT_ONLY", False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY = _content_security_policy
else:
    CONTENT_SECURITY_POLICY = _content_security_policy

# --- Operators' metrics (GET /metrics: config/metrics_endpoint.py) -------------------------------
# Who may scrape: a bearer token and/or an allow-list of client addresses or networks (read as the
# rate limits read them, TRUSTED_PROXY_COUNT hops into X-Forwarded-For; an IPv6 client counts by
# its /64). Every check that is set must pass; with neither set the endpoint is off (404), since
# no default is safe: behind a proxy on the same machine every request comes from 127.0.0.1.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("Environment variable METRICS_TOKEN must be at least 32 characters.")
METRICS_ALLOWED_IPS = env_networks("METRICS_ALLOWED_IPS")
# What only workers observe (time per image, provider errors, rate-limit waits, rescues, time to
# start) each process writes to files in this folder (prometheus_client's multiprocess mode); a
# scrape sums every process's files. prometheus_client picks that mode when it is first imported,
# so the variable is put in the environment here, before any Atelier module imports it (a value
# set by the start-up script wins). The folder must be emptied before the machine's processes
# start, never while they run (docs/architecture.md, "Operators' metrics").
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = PROMETHEUS_MULTIPROC_DIR

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
