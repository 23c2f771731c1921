"""Settings, read from the environment (see .env.example for every variable).

DJANGO_ENV=development (the default) runs with safe local defaults: a SQLite file,
the local Stripe emulator's URL, an insecure but fixed secret key. DJANGO_ENV=production
requires SECRET_KEY and turns on every HTTPS hardening setting that `check --deploy` asks for.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab

from config.knobs import knobs_read
from invoicing.conf import KNOBS as INVOICING_KNOBS
from ledger.conf import KNOBS as LEDGER_KNOBS
from marketplace.conf import KNOBS as MARKETPLACE_KNOBS
from payouts.conf import KNOBS as PAYOUTS_KNOBS
from reconciliation.conf import KNOBS as RECONCILIATION_KNOBS
from stripe_gateway.conf import KNOBS as STRIPE_KNOBS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise environ.ImproperlyConfigured("DJANGO_ENV must be development, production or test")
PRODUCTION = DJANGO_ENV == "production"

# Development defaults: public (they are in this repository), so production refuses every one
# of them at start (below) and `check --deploy` names any that a settings override brings back.
DEVELOPMENT_SECRETS = {
    "SECRET_KEY": frozenset(
        {
            "dev-insecure-key-do-not-use-in-production-0123456789",
            "dev-only-secret-key-change-me-0123456789-abcdefghijklmnop",  # old docker-compose
        }
    ),
    "STRIPE_API_KEY": frozenset({"sk_test_emulator"}),
    "STRIPE_WEBHOOK_SECRET": frozenset({"whsec_emulator"}),
}

if PRODUCTION:
    SECRET_KEY = env.str("SECRET_KEY")  # required: raises ImproperlyConfigured when unset
else:
    SECRET_KEY = env.str(
        "SECRET_KEY", default="dev-insecure-key-do-not-use-in-production-0123456789"
    )
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "audit",
    "ops",
    "ledger",
    "stripe_gateway",
    "marketplace",
    "payouts",
    "reconciliation",
    "invoicing",
    "staff",
    "demo",  # `manage.py demo` only; imports the product, never imported by it
]

MIDDLEWARE = [
    "ops.middleware.RequestContextMiddleware",  # first: the request id covers everything
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's, the dashboard's) served by the app itself, DEBUG or not.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # NUL bytes, lone surrogates and oversized values in a path or query string: a 400 before
    # any view or query runs (bodies are checked by the parsers below).
    "config.input.InputGuardMiddleware",
    # Stripe's webhook deliveries stop here: they need none of what follows (sessions, users,
    # CSRF, messages, audit context, frame options), and they are the busiest path.
    "stripe_gateway.middleware.WebhookShortcutMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
# The demo's embedded default is a SQLite file; tests and production use PostgreSQL.
(BASE_DIR / "var").mkdir(exist_ok=True)
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'demo.sqlite3'}")
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DB_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One writer at a time; wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis and Celery ----------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_EAGER", default=False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery's Django fixup closes every database connection before and after each task unless
# this is set (then only every N tasks): a PostgreSQL backend started per webhook event, and
# the prepared statements (common/rawsql.py) lost with it. Tasks close their connections as
# requests do instead (config/celery.py: CONN_MAX_AGE, broken or left in a transaction).
CELERY_DB_REUSE_MAX = 1000

# --- Stripe --------------------------------------------------------------------------------
if PRODUCTION:  # required in production: raise ImproperlyConfigured when unset
    STRIPE_API_KEY = env.str("STRIPE_API_KEY")
    STRIPE_WEBHOOK_SECRETS = env.list("STRIPE_WEBHOOK_SECRET")
else:
    STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="sk_test_emulator")
    # Several secrets (comma-separated) are accepted during a rotation, and for Connect.
    STRIPE_WEBHOOK_SECRETS = env.list("STRIPE_WEBHOOK_SECRET", default=["whsec_emulator"])
STRIPE_WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRETS[0] if STRIPE_WEBHOOK_SECRETS else ""
if PRODUCTION:
    _public = sorted(
        name
        for name, values in {
            "SECRET_KEY": [SECRET_KEY],
            "STRIPE_API_KEY": [STRIPE_API_KEY],
            "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRETS,
        }.items()
        if not any(values) or any(value in DEVELOPMENT_SECRETS[name] for value in values)
    )
    if _public:
        raise environ.ImproperlyConfigured(
            "DJANGO_ENV=production refuses empty or development default secrets (they are "
            f"public): set {', '.join(_public)} from the secret store."
        )
# Every other Stripe knob (timeouts, webhook limits, the inbox's retries, lease and sweeper):
# declared in stripe_gateway/conf.py, read below with the other apps' knobs.
# A Stripe call inside an open DB transaction is logged as an error; tests make it raise.
STRIPE_FORBID_IN_ATOMIC = env.bool("STRIPE_FORBID_IN_ATOMIC", default=DJANGO_ENV == "test")

# --- Ledger --------------------------------------------------------------------------------
# Chart of accounts: address patterns (first match wins, `*` matches one segment, a trailing
# `**` any number) mapped to asset / liability / equity / revenue / expense.
LEDGER_CHART_OF_ACCOUNTS = [
    ("world", "equity"),
    ("stripe:balance", "asset"),
    ("bank:**", "asset"),
    ("payments:**", "liability"),
    ("orders:**", "liability"),
    ("restaurants:**", "liability"),
    ("riders:**", "liability"),
    ("coupons:**", "equity"),
    ("platform:fees", "revenue"),
    ("platform:losses", "expense"),
    ("platform:marketing", "expense"),
    ("platform:stripe_fees", "expense"),
    ("platform:disputes", "expense"),
    ("platform:**", "equity"),
]

# --- Tuning knobs --------------------------------------------------------------------------
# Each app declares its knobs (name, default, meaning) in its conf.py; each is read here, once,
# from the environment variable of the same name. .env.example lists them all.
knobs: dict[str, Any] = {}  # lowercase: not a setting itself
for declared in (
    STRIPE_KNOBS,
    LEDGER_KNOBS,
    MARKETPLACE_KNOBS,
    PAYOUTS_KNOBS,
    RECONCILIATION_KNOBS,
    INVOICING_KNOBS,
):
    knobs.update(knobs_read(env, declared))
globals().update(knobs)

# --- E-mail (the nightly reconciliation report, risk alerts) ---------------------------------
# EMAIL_URL: smtp+tls://user:password@host:587 in production; development and the demo write
# each message as a file under var/mail/; tests use Django's locmem outbox.
_email = env.email_url(
    "EMAIL_URL", default="smtp://localhost:25" if PRODUCTION else "filemail:///var/mail"
)
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
if _email.get("EMAIL_FILE_PATH") is not None:
    # filemail://var/mail is relative to the project (environ drops the leading slash)
    EMAIL_FILE_PATH = str(BASE_DIR / _email["EMAIL_FILE_PATH"])
for _name in ("EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_HOST_PASSWORD"):
    if _email.get(_name) is not None:
        globals()[_name] = _email[_name]
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS", False))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL", False))
EMAIL_TIMEOUT = 20
DEFAULT_FROM_EMAIL = knobs["RECONCILIATION_REPORT_FROM"]

# --- Celery beat: every periodic task, in one place ------------------------------------------
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # The inbox's sweeper: lost scheduling, due retries, expired leases.
    "stripe-events-sweep": {
        "task": "marketplace.webhooks.tasks.stripe_events_sweep",
        "schedule": 30.0,
    },
    # The sealer also runs after commits (debounced); beat is the backstop.
    "ledger-seal": {"task": "ledger.seal", "schedule": float(knobs["LEDGER_SEAL_INTERVAL"])},
    "ledger-verify": {"task": "ledger.verify", "schedule": 24 * 3600.0},
    # Balance checkpoints: past balances and the balance sheet as of a date read a bounded range.
    "ledger-checkpoint": {
        "task": "ledger.checkpoint",
        "schedule": float(knobs["LEDGER_CHECKPOINT_INTERVAL"]),
    },
    "marketplace-orders-expire": {"task": "marketplace.orders_expire", "schedule": 300.0},
    "marketplace-refunds-sweep": {"task": "marketplace.refunds_sweep", "schedule": 60.0},
    # Asynchronous capture: payments whose balance transaction came after their events.
    "marketplace-payments-settle": {"task": "marketplace.payments_settle", "schedule": 60.0},
    "payouts-schedule": {
        "task": "payouts.tasks.payouts_schedule",
        "schedule": knobs["PAYOUTS_SCHEDULE_SECONDS"],
        "options": {"queue": knobs["PAYOUTS_QUEUE"]},
    },
    "payouts-sweep": {
        "task": "payouts.tasks.payouts_sweep",
        "schedule": knobs["PAYOUTS_SWEEP_SECONDS"],
        "options": {"queue": knobs["PAYOUTS_QUEUE"]},
    },
    # The previous day, once Stripe has settled its balance transactions for it; then the
    # report is e-mailed (with the invoicing check: composed in staff.tasks, above both).
    "reconciliation-nightly": {
        "task": "staff.finance_nightly",
        "schedule": crontab(
            hour=knobs["RECONCILIATION_NIGHTLY_HOUR"],
            minute=knobs["RECONCILIATION_NIGHTLY_MINUTE"],
        ),
    },
    # Stripe balance vs what is owed, once a day (and an alert below the threshold).
    "risk-snapshot": {
        "task": "staff.risk_snapshot",
        "schedule": crontab(hour=knobs["RISK_SNAPSHOT_HOUR"], minute=0),
    },
    # Invoicing: the sweep issues what orders, refunds and lost disputes need; month-end
    # documents are idempotent, so the pass every 6 hours issues any closed month lacking them.
    "invoicing-sweep": {
        "task": "invoicing.tasks.invoices_sweep",
        "schedule": float(knobs["INVOICING_SWEEP_SECONDS"]),
    },
    "invoicing-month-end": {"task": "invoicing.tasks.invoices_month_end", "schedule": 3600.0 * 6},
}

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Tokens stored hashed (SHA-512 digest), with an expiry, revocable per account:
        # `manage.py api_token issue|revoke|list` (staff/management/commands/api_token.py).
        # knox's checks, with the token, its user and their permissions in one statement.
        "config.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Every view names what it needs (config.permissions.NamedPermissions); a view that
    # forgets falls back to this: a read for staff, never a write.
    "DEFAULT_PERMISSION_CLASSES": ["config.permissions.NamedPermissions"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    # limit/offset checked (a 400 beyond bigint), pages capped at max_limit (config.pagination).
    "DEFAULT_PAGINATION_CLASS": "config.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # The same parsers as DRF's defaults, which also refuse what PostgreSQL cannot store (NUL,
    # lone surrogates, integers beyond bigint, deep nesting) with a 400 (config.input).
    "DEFAULT_PARSER_CLASSES": [
        "config.input.JSONParser",
        "config.input.FormParser",
        "config.input.MultiPartParser",
    ],
}
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=90)),
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
    "TOKEN_LIMIT_PER_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Eats payments API",
    "DESCRIPTION": "Ledger, marketplace money flows, payouts and reconciliation.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Every operation documents each status code it can answer, with the error body
    # `{"code", "message", ...}` (config.schema.postprocess_error_responses).
    # The API is documented as JSON: form bodies are still parsed (and guarded), but a client
    # generated from the schema speaks JSON, and one body type per operation keeps the
    # generated code sound (openapi-python-client breaks on three identical ones).
    "PARSER_WHITELIST": ["config.input.JSONParser"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.postprocess_error_responses",
    ],
}

# --- Auth, i18n, static --------------------------------------------------------------------
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
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves static files whatever DEBUG says. In production they are collected at
# image build time (`manage.py collectstatic`) into STATIC_ROOT with hashed, compressed names
# (cacheable forever); elsewhere they are served straight from the apps' static folders, so
# tests, the demo and `make serve` need no collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(exist_ok=True)  # empty outside production: WhiteNoise warns if missing

# --- Security (all on in production; `manage.py check --deploy` is clean there) ---------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes and the scraper speak plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging (ops.logs) ----------------------------------------------------------------------
# JSON lines in production (LOG_FORMAT=json), plain text elsewhere; every line carries the ids
# bound in ops.logs (request, Celery task, Stripe event, order, payout, run) and is scrubbed
# of secrets and card numbers by ops.logs.RedactingFilter.
LOG_FORMAT = env.str("LOG_FORMAT", default="json" if PRODUCTION else "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "ops.logs.ContextFilter"},
        "redact": {"()": "ops.logs.RedactingFilter"},
    },
    "formatters": {
        "plain": {
            "()": "ops.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {
            "()": "ops.logs.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # stripe-python logs every request (method, path, status) at INFO: noise at our volume;
        # our seam logs what matters (errors, the in-transaction guard).
        "stripe": {"level": "WARNING"},
    },
}
# Celery keeps the logging above instead of installing its own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    **SPECTACULAR_SETTINGS.get("ENUM_NAME_OVERRIDES", {}),  # type: ignore[dict-item]
    **{
        "OrderStatusEnum": "marketplace.models.orders.Order.Status",
        "OrderCouponStateEnum": "marketplace.models.orders.Order.CouponState",
        "OrderPaymentIntentCancelEnum": "marketplace.models.orders.Order.IntentCancel",
        # pending/submitted/succeeded/failed: refunds and top-ups share the set
        "StripeRequestStatusEnum": "marketplace.models.refunds.Refund.Status",
        "RefundBearerEnum": "marketplace.models.refunds.Refund.Bearer",
        "RefundSourceEnum": "marketplace.models.refunds.Refund.Source",
        "PayeeKindEnum": "payouts.models.PayeeKind",
    },
}

# --- Operations: metrics, database roles, PgBouncer, broker outages (issue 19) ---------------
# /metrics needs `Authorization: Bearer $METRICS_TOKEN`; with no token it is refused in
# production and open elsewhere. The defaulting-risk coverage is exported for these assets.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_RISK_ASSETS = env.list("METRICS_RISK_ASSETS", default=["USD/2"])

# Two PostgreSQL roles (manage.py db_roles): the app role (DATABASE_URL) that web, worker and
# beat use, which may not alter, truncate or rewrite the ledger; and the owner role that
# migrates. A process started with DB_ROLE=owner (the migrate hook) connects with
# DATABASE_OWNER_URL instead.
DB_ROLE = env.str("DB_ROLE", default="app")
if DB_ROLE == "owner" and env.str("DATABASE_OWNER_URL", default=""):
    _owner = env.db_url("DATABASE_OWNER_URL")
    DATABASES["default"].update(
        {k: _owner[k] for k in ("NAME", "USER", "PASSWORD", "HOST", "PORT") if k in _owner}
    )

# Server-side parameter binding (issue 20), which lets the hot write paths prepare their
# statements (common/prepared.py: only there; elsewhere every statement is planned per call,
# as with Django's default client-side binding). DB_PREPARED=0 restores Django's default;
# behind PgBouncer it is off below.
if DATABASES["default"]["ENGINE"].endswith("postgresql") and env.bool("DB_PREPARED", default=True):
    DATABASES["default"].setdefault("OPTIONS", {})["server_side_binding"] = True

# Behind PgBouncer in transaction pooling mode (DB_PGBOUNCER=1): a server connection serves
# another client after each transaction, so nothing may outlive one. Django's psycopg
# backend binds parameters client-side (no server-side prepared statements) unless told
# otherwise; this keeps it so and turns off named server-side cursors (they live across
# transactions in .iterator()). Session SETs and session advisory locks are not used by the
# code (the sealer takes pg_try_advisory_xact_lock; lock_timeout is set_config(..., true)).
if env.bool("DB_PGBOUNCER", default=False) and DATABASES["default"]["ENGINE"].endswith(
    "postgresql"
):
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = False

# Ride out a broker outage instead of dying: retry the connection for ever (Celery 5.3+
# stops the worker after broker_connection_max_retries otherwise), and bound how long a
# publish waits so a web request does not hang while Redis is away.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_BROKER_TRANSPORT_OPTIONS.update(
    {
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
        "retry_on_timeout": True,
        "health_check_interval": 25,
    }
)
CELERY_BROKER_HEARTBEAT = 0  # redis transport has no heartbeats; health_check_interval does it
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False  # acks_late re-delivers

# Beat is a singleton by a Redis lock (ops/beat.py): however many beat processes run, only the
# one holding the lock sends the schedule; another takes over within TTL + TTL/3 of its death.
CELERY_BEAT_SCHEDULER = "ops.beat:SingletonScheduler"
CELERY_BEAT_LOCK_KEY = env.str("BEAT_LOCK_KEY", default="eats:beat:lock")
CELERY_BEAT_LOCK_TTL = env.float("BEAT_LOCK_TTL", default=30.0)

# --- Staff dashboard (staff/, at /staff/) ---------------------------------------------------
LOGIN_URL = "staff:login"
LOGIN_REDIRECT_URL = "staff:home"
LOGOUT_REDIRECT_URL = "staff:login"
# Staff sessions end with the browser and after 12 hours at most.
SESSION_COOKIE_AGE = env.int("STAFF_SESSION_SECONDS", default=12 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
