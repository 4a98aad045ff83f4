"""Settings of the chaos run (``make test-chaos``): Celery on Redis, PostgreSQL, short timeouts.

Every process of the run (web, workers, ``hidream_sync``, the runner) uses this module; the
live values (the simulator's URL, the web server's, the media folder, the database) come
through the environment, read by ``tests.settings_celery``. Timeouts, leases and the broker's
visibility timeout are short so work a killed worker held comes back within seconds, not an
hour; the retry and polling rhythm is quick so the run settles within minutes.
"""

import os

os.environ.setdefault("TASKS_BACKEND", "celery")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")

from tests.settings_celery import *  # noqa: E402, F403

# A killed worker's unacknowledged jobs (acks_late) are delivered again after this, not 1 h.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 30}

# The lease of a claim or a request slot is (connect + read) * 3 + 10 s = 22 s.
HIDREAM_CONNECT_TIMEOUT = 1.0
HIDREAM_READ_TIMEOUT = 3.0
HIDREAM_RETRY_BACKOFF = 0.5
HIDREAM_RETRY_BACKOFF_MAX = 4.0
HIDREAM_CALLBACK_GRACE = 5.0
HIDREAM_POLL_INTERVAL = float(os.environ.get("HIDREAM_POLL_INTERVAL", 2.0))
# Nothing in the run may fail for lack of time: the run settles long before.
HIDREAM_TASK_DEADLINE = 3600.0
HIDREAM_MAX_CONCURRENT_REQUESTS = int(os.environ.get("HIDREAM_MAX_CONCURRENT_REQUESTS", 4))
HIDREAM_MAX_IMAGES_PER_MINUTE = int(os.environ.get("HIDREAM_MAX_IMAGES_PER_MINUTE", 0))
# No person retries anything in the run, and nothing unconfirmed is resent: a second bill for
# one task is a bug.
HIDREAM_RESEND_UNCONFIRMED = False

# Each process logs to its own file (the runner redirects stderr): the app at INFO, with the
# process id (a pool child's, too: Celery leaves the logging alone).
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"}
    },
    "filters": {"mask_callback_tokens": {"()": "hidream_models.logging.MaskCallbackTokens"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_callback_tokens"],
        }
    },
    "loggers": {
        "hidream_models": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "celery": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "django.tasks": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
