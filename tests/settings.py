"""Test settings: the demo's, with jobs held for the tests to run (tests.jobs).

``DATABASE_URL`` picks the database (SQLite in memory by default; PostgreSQL in CI).
"""

import os

os.environ.setdefault("DEBUG", "true")

from shop_demo.settings import *  # noqa: E402, F403
from shop_demo.settings import env  # noqa: E402

# Each test process counts throttles on its own (the tests clear it between tests); the
# shared-cache check (W003) is tested with a shared cache of its own.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

DATABASES = {"default": env.db("DATABASE_URL", default="sqlite://:memory:")}
TASKS = {"default": {"BACKEND": "tests.jobs.SharedDummyBackend"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
HIDREAM_API_TOKEN = "test-token-s3cr3t-value"
HIDREAM_BASE_URL = "http://127.0.0.1:9"  # overridden per test with the simulator's URL
HIDREAM_CALLBACK_BASE_URL = ""
HIDREAM_RETRY_BACKOFF = 0.01
HIDREAM_RETRY_BACKOFF_MAX = 0.05
HIDREAM_CONNECT_TIMEOUT = 2.0
HIDREAM_READ_TIMEOUT = 5.0
# The plan limits are tested on purpose (test_limits.py); elsewhere they would only slow down.
HIDREAM_MAX_CONCURRENT_REQUESTS = 0
HIDREAM_MAX_IMAGES_PER_MINUTE = 0
LOGGING = {"version": 1, "disable_existing_loggers": False}
