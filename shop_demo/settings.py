"""Settings of the demo shop, read from the environment (and ``.env``) with django-environ.

Every ``HIDREAM_*`` setting can be given as an environment variable of the same name.
"""

import os
import secrets
import time
from pathlib import Path

import environ

from hidream_models.conf import SETTINGS as _HIDREAM_SPECS

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# The demo's local state: database, media and secret key (git-ignored). DEMO_VAR_DIR moves
# it elsewhere (the tests use a temporary one).
VAR_DIR = Path(env.str("DEMO_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _shared_secret_key(path: Path) -> str:
    """The demo's own random SECRET_KEY, kept in ``path``: made by the first process that
    starts, read by every other.

    ``SECRET_KEY`` keys each task's callback token (an HMAC of its id), so a key known to
    all, as a fixed default would be, lets anyone write any task's callback URL. The web
    server, the task worker and hidream_sync are separate processes, often started
    together, and must share one key: O_CREAT|O_EXCL lets exactly one of them create the
    file (mode 0600); the others read it once its line is complete.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        key = secrets.token_urlsafe(48)  # 64 characters, 384 random bits
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(key + "\n")
        return key
    deadline, previous = time.monotonic() + 5, None
    while True:
        text = path.read_text(encoding="utf-8")
        # The key this function writes ends with a newline, so a line without one is still
        # being written; a key written by hand may lack it, and is taken once it holds still.
        if (text.endswith("\n") or text == previous) and text.strip():
            return text.strip()
        if time.monotonic() > deadline:
            raise environ.ImproperlyConfigured(
                f"{path} holds no key: delete it to have the demo make a new one, "
                "or set SECRET_KEY."
            )
        previous = text
        time.sleep(0.05)


DEBUG = env.bool("DEBUG", default=True)
if DEBUG and "SECRET_KEY" not in env.ENVIRON:
    SECRET_KEY = _shared_secret_key(VAR_DIR / "secret_key")
else:
    # From the environment, which wins; unset with DEBUG off, this fails loudly on purpose.
    SECRET_KEY = env.str("SECRET_KEY")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

if not DEBUG:
    # Production-like: HTTPS everywhere (behind a proxy that sets X-Forwarded-Proto).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks_db",
    "hidream_models",
    "shop_demo.catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shop_demo.urls"
WSGI_APPLICATION = "shop_demo.wsgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'demo.sqlite3'}")}
# The API's throttle counts in the default cache, so it must be one every process shares:
# files on this machine by default; CACHE_URL (e.g. redis://127.0.0.1:6379/1) for more.
CACHES = {"default": env.cache_url("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}
# Keep connections between requests (PostgreSQL): a new one per request halves throughput.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, sync) share the file: wait for locks, don't fail.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LOCALE_PATHS = [BASE_DIR / "shop_demo" / "locale"]
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = env.str("MEDIA_URL", default="/media/")
MEDIA_ROOT = env.path("MEDIA_ROOT", default=VAR_DIR / "media")

# Background jobs: the database worker by default (make demo), Celery on Redis to scale out.
TASKS_BACKEND = env.str("TASKS_BACKEND", default="database")
if TASKS_BACKEND == "celery":
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_celery.CeleryBackend",
            "OPTIONS": {"CELERY_APP": "shop_demo.celery.app"},
        }
    }
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
    # A job whose worker (or one of its pool processes) dies is delivered again; the app's
    # claims make running it twice safe.
    CELERY_TASK_ACKS_LATE = True
    CELERY_TASK_REJECT_ON_WORKER_LOST = True
    CELERY_WORKER_PREFETCH_MULTIPLIER = 1
    CELERY_TIMEZONE = TIME_ZONE
    # The app never reads job results (its state lives in its own tables): no result backend.
    SILENCED_SYSTEM_CHECKS = ["django_tasks_celery.W001", "django_tasks_celery.W002"]
elif TASKS_BACKEND == "database":
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
else:
    raise environ.ImproperlyConfigured(
        f"TASKS_BACKEND must be 'database' or 'celery', not {TASKS_BACKEND!r}."
    )

REST_FRAMEWORK = {
    # Token first, so an anonymous API call gets 401 with "WWW-Authenticate: Token".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- hidream_models ---------------------------------------------------------------------------
# Every HIDREAM_* setting the app knows can come from the environment (or .env) by its name;
# unset ones keep the app's defaults (hidream_models/conf.py).
_HIDREAM_READERS = {
    str: env.str,
    int: env.int,
    float: env.float,
    bool: env.bool,
    list: env.list,
    dict: env.json,
}
for _name, _spec in _HIDREAM_SPECS.items():
    _key = f"HIDREAM_{_name}"
    if _key in env.ENVIRON:
        _kinds = _spec.kind if isinstance(_spec.kind, tuple) else (_spec.kind,)
        _type = float if float in _kinds else _kinds[0]
        globals()[_key] = _HIDREAM_READERS[_type](_key)
HIDREAM_PRODUCT_MODELS = env.json("HIDREAM_PRODUCT_MODELS", default={"catalog.product": "image"})
HIDREAM_PUBLISHER = env.str(
    "HIDREAM_PUBLISHER", default="shop_demo.catalog.publishing.CatalogPublisher"
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The callback URL's token is its only key (hidream_models.logging): every handler masks it,
# Django's own three too, redefined here as django.utils.log.DEFAULT_LOGGING has them (the
# "django" logger would otherwise keep its unfiltered ones). runserver logs each request
# line, path and token included, to "django.server".
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "mask_callback_tokens": {"()": "hidream_models.logging.MaskCallbackTokens"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "require_debug_true": {"()": "django.utils.log.RequireDebugTrue"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_callback_tokens"],
        },
        "django.console": {
            "level": "INFO",
            "class": "logging.StreamHandler",
            "filters": ["require_debug_true", "mask_callback_tokens"],
        },
        "django.server": {
            "level": "INFO",
            "class": "logging.StreamHandler",
            "formatter": "django.server",
            "filters": ["mask_callback_tokens"],
        },
        "mail_admins": {
            "level": "ERROR",
            "class": "django.utils.log.AdminEmailHandler",
            "filters": ["require_debug_false", "mask_callback_tokens"],
        },
    },
    "loggers": {
        "django": {"handlers": ["django.console", "mail_admins"], "level": "INFO"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        "hidream_models": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
        "django.tasks": {"handlers": ["console"], "level": "INFO"},
        "django_tasks_db": {"handlers": ["console"], "level": "INFO"},
    },
}
