"""Settings for the scale-out test (``make test-celery``): jobs go to Celery on Redis, the
database is PostgreSQL (``DATABASE_URL``), so separate worker processes share everything."""

import os

os.environ.setdefault("TASKS_BACKEND", "celery")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7")

from tests.settings import *  # noqa: E402, F403
from tests.settings import env  # noqa: E402

if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    raise RuntimeError(
        "make test-celery needs PostgreSQL: set DATABASE_URL=postgres://postgres@127.0.0.1/..."
    )
DATABASES = {"default": env.db("DATABASE_URL")}
TASKS = {
    "default": {
        "BACKEND": "django_tasks_celery.CeleryBackend",
        "OPTIONS": {"CELERY_APP": "shop_demo.celery.app"},
    }
}
CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
SILENCED_SYSTEM_CHECKS = ["django_tasks_celery.W001", "django_tasks_celery.W002"]

# The worker processes get the test's live values (simulator URL, media folder, limits)
# through the environment; the test process sets them on itself with override_settings.
for _name, _cast in {
    "HIDREAM_BASE_URL": str,
    "HIDREAM_API_TOKEN": str,
    "HIDREAM_CALLBACK_BASE_URL": str,
    "HIDREAM_MAX_CONCURRENT_REQUESTS": int,
    "HIDREAM_MAX_IMAGES_PER_MINUTE": int,
    "HIDREAM_POLL_INTERVAL": float,
    "MEDIA_ROOT": str,
}.items():
    if _name in os.environ:
        globals()[_name] = _cast(os.environ[_name])
