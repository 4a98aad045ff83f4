"""The demo's Celery app, used when ``TASKS_BACKEND=celery`` (see docs/deploying.md).

Run workers with ``celery -A shop_demo worker``; jobs are Django tasks (``django.tasks``)
sent through django-tasks-celery, so the app's code is the same as with the database worker.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_demo.settings")

app = Celery("shop_demo")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The Django tasks register themselves with Celery when their modules are imported.
app.conf.imports = ["hidream_models.tasks"]
