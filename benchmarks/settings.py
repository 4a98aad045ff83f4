"""Settings of the benchmarks: the demo's, production-like (DEBUG off), with a bench urlconf.

Everything environment-driven in ``shop_demo.settings`` still applies (``DATABASE_URL``,
``MEDIA_ROOT``, every ``HIDREAM_*``); ``python -m benchmarks`` sets those for itself and for
the processes it starts (gunicorn, db_worker, the memory children).
"""

import os

# The demo's settings want a SECRET_KEY when DEBUG is off; DEBUG is switched off below.
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")

from shop_demo.settings import *  # noqa: E402, F403

DEBUG = False  # timings as in production: no SQL log, no debug pages
ROOT_URLCONF = "benchmarks.bench_urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
# Loopback over plain HTTP, whatever DEBUG the environment asked for.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        name: {"handlers": ["console"], "level": "ERROR", "propagate": False}
        for name in ("hidream_models", "django.tasks", "django_tasks_db", "django.request")
    },
}
