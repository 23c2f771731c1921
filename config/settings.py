"""Settings, read from the environment (see .env.example for every variable).

DJANGO_ENV=development (the default) runs with safe local defaults: a SQLite file,
the local Stripe emulator's URL, an insecure but fixed secret key. DJANGO_ENV=production
requires SECRET_KEY and turns on every HTTPS hardening setting that `check --deploy` asks for.
"""

from datetime import timedelta
from pathlib import Path

import environ

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
    "marketplace",
    "payouts",
    "reconciliation",
    "invoicing",
    "staff",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # NUL bytes, lone surrogates and oversized values in a path or query string: a 400 before
    # any view or query runs (bodies are checked by the parsers below).
    "config.input.InputGuardMiddleware",
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
CELERY_BEAT_SCHEDULE: dict = {}  # each app adds its entries in its AppConfig.ready()

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
STRIPE_WEBHOOK_TOLERANCE = env.int("STRIPE_WEBHOOK_TOLERANCE", default=300)
STRIPE_WEBHOOK_MAX_BODY = env.int("STRIPE_WEBHOOK_MAX_BODY", default=256 * 1024)
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
STRIPE_TIMEOUT = env.float("STRIPE_TIMEOUT", default=20.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
# A Stripe call inside an open DB transaction is logged as an error; tests make it raise.
STRIPE_FORBID_IN_ATOMIC = env.bool("STRIPE_FORBID_IN_ATOMIC", default=DJANGO_ENV == "test")
# Webhook inbox processing (marketplace.webhooks): retries with exponential backoff
# (base * 2**(attempt-1), capped), then `failed` for good; a claimed row's lease; the queue
# the processing tasks go to; how many due rows one sweep re-drives.
STRIPE_EVENTS_MAX_ATTEMPTS = env.int("STRIPE_EVENTS_MAX_ATTEMPTS", default=10)
STRIPE_EVENTS_BACKOFF_BASE = env.float("STRIPE_EVENTS_BACKOFF_BASE", default=30.0)
STRIPE_EVENTS_BACKOFF_MAX = env.float("STRIPE_EVENTS_BACKOFF_MAX", default=3600.0)
STRIPE_EVENTS_LEASE = env.float("STRIPE_EVENTS_LEASE", default=300.0)
STRIPE_EVENTS_SWEEP_GRACE = env.float("STRIPE_EVENTS_SWEEP_GRACE", default=60.0)
STRIPE_EVENTS_SWEEP_BATCH = env.int("STRIPE_EVENTS_SWEEP_BATCH", default=500)
STRIPE_EVENTS_QUEUE = env.str("STRIPE_EVENTS_QUEUE", default="celery")
CELERY_BEAT_SCHEDULE["stripe-events-sweep"] = {
    "task": "marketplace.webhooks.tasks.stripe_events_sweep",
    "schedule": 30.0,
}

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

# --- Payouts -------------------------------------------------------------------------------
# See payouts/conf.py for what each one means. Amounts are minor units of the payee's asset.
PAYOUTS_MIN_AMOUNT = env.int("PAYOUTS_MIN_AMOUNT", default=1000)
PAYOUTS_ROLLING_RESERVE_BPS = env.int("PAYOUTS_ROLLING_RESERVE_BPS", default=0)
PAYOUTS_ROLLING_RESERVE_DAYS = env.int("PAYOUTS_ROLLING_RESERVE_DAYS", default=7)
PAYOUTS_SCHEDULE_SECONDS = env.float("PAYOUTS_SCHEDULE_SECONDS", default=3600.0)
PAYOUTS_SWEEP_SECONDS = env.float("PAYOUTS_SWEEP_SECONDS", default=60.0)
PAYOUTS_LEASE_SECONDS = env.float("PAYOUTS_LEASE_SECONDS", default=300.0)
PAYOUTS_STUCK_SECONDS = {
    "pending": 60.0,
    "reserved": env.float("PAYOUTS_STUCK_RESERVED_SECONDS", default=120.0),
    "submitting": env.float("PAYOUTS_STUCK_SUBMITTING_SECONDS", default=120.0),
    "submitted": env.float("PAYOUTS_STUCK_SUBMITTED_SECONDS", default=60.0),
    "failed": 300.0,
}
PAYOUTS_ESCALATE_SECONDS = env.float("PAYOUTS_ESCALATE_SECONDS", default=3600.0)
PAYOUTS_QUEUE = env.str("PAYOUTS_QUEUE", default="celery")
CELERY_BEAT_SCHEDULE["payouts-schedule"] = {
    "task": "payouts.tasks.payouts_schedule",
    "schedule": PAYOUTS_SCHEDULE_SECONDS,
    "options": {"queue": PAYOUTS_QUEUE},
}
CELERY_BEAT_SCHEDULE["payouts-sweep"] = {
    "task": "payouts.tasks.payouts_sweep",
    "schedule": PAYOUTS_SWEEP_SECONDS,
    "options": {"queue": PAYOUTS_QUEUE},
}

# --- REST API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Tokens stored hashed (SHA-512 digest), with an expiry, revocable per account:
        # `manage.py api_token issue|revoke|list` (staff/management/commands/api_token.py).
        "knox.auth.TokenAuthentication",
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

# --- Security (all on in production; `manage.py check --deploy` is clean there) ---------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # stripe-python logs every request (method, path, status) at INFO: noise at our volume;
        # our seam logs what matters (errors, the in-transaction guard).
        "stripe": {"level": "WARNING"},
    },
}

# --- Marketplace money flows (marketplace.services) ----------------------------------------
# Unpaid orders older than this are canceled and their coupon goes back (Celery beat).
ORDER_PAYMENT_TTL = env.int("ORDER_PAYMENT_TTL", default=3600)
# Refunds pending (no re_ id) for longer than this are submitted again with the same key by
# the beat's sweeper; past REFUNDS_SWEEP_MAX_AGE (Stripe keeps idempotency keys for 24 h)
# they are flagged for staff instead, never sent again.
REFUNDS_SWEEP_GRACE = env.int("REFUNDS_SWEEP_GRACE", default=300)
REFUNDS_SWEEP_MAX_AGE = env.int("REFUNDS_SWEEP_MAX_AGE", default=23 * 3600)
# Four-eyes rule: a refund above this many minor units of its asset waits for a different user
# with marketplace.approve_refund ("USD/2=5000,EUR/2=5000"); an asset not listed needs approval
# for every refund, and 0 means every refund of that asset.
REFUNDS_APPROVAL_THRESHOLD = {
    asset.strip(): int(limit)
    for asset, _, limit in (
        item.partition("=")
        for item in env.str("REFUNDS_APPROVAL_THRESHOLD", default="USD/2=5000").split(",")
        if item.strip()
    )
}
# A refund request without an idempotency key equal to one made by the same user on the same
# order (amount, bearer, shares) within this many seconds is the same request: the first
# refund is returned, nothing is created (a double submit never refunds twice). 0 turns it off.
REFUNDS_DUPLICATE_WINDOW = env.int("REFUNDS_DUPLICATE_WINDOW", default=600)
# Who bears a dispute's amount: "platform" (platform:disputes) or "restaurant" (its balance
# may go negative); the dispute fee is always the platform's (platform:stripe_fees).
MARKETPLACE_DISPUTE_BEARER = env.str("MARKETPLACE_DISPUTE_BEARER", default="platform")
# Retry delay of an event that arrived before the one it depends on (a refund before its
# payment), in seconds.
MARKETPLACE_DEFER_SECONDS = env.float("MARKETPLACE_DEFER_SECONDS", default=5.0)
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
