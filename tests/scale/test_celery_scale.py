"""Scale-out: the same app on two Celery workers (Redis broker, PostgreSQL), exactly once.

Run by ``make test-celery`` (which sets ``DJANGO_SETTINGS_MODULE=tests.settings_celery`` and a
PostgreSQL ``DATABASE_URL``); the default ``make test`` deselects it (marker ``celery``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from hidream_models import services
from hidream_models.models import GeneratedImage, ImageStatus, ModelImageTask, TaskStatus
from shop_demo.catalog.models import Product
from tests.conftest import make_image_bytes, wait_for

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
TASKS = 200
PICTURES = 2
WORKERS = 2
CONCURRENCY = 3  # the plan's concurrent requests, HIDREAM_MAX_CONCURRENT_REQUESTS


@pytest.fixture
def broker():
    """An empty Redis database as the broker, so no job of an earlier run is delivered."""
    import redis

    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def celery_workers(broker, simulator, live_server, settings, media_root):
    # The workers read these from the environment at start: set them before, not after.
    settings.HIDREAM_CALLBACK_BASE_URL = live_server.url
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = CONCURRENCY
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_celery",
        "DATABASE_URL": _test_database_url(),
        "HIDREAM_BASE_URL": simulator.base_url,
        "HIDREAM_API_TOKEN": settings.HIDREAM_API_TOKEN,
        "HIDREAM_CALLBACK_BASE_URL": live_server.url,
        "HIDREAM_MAX_CONCURRENT_REQUESTS": str(settings.HIDREAM_MAX_CONCURRENT_REQUESTS),
        "MEDIA_ROOT": str(media_root),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "shop_demo", "worker", "--concurrency", "2",
             "--pool", "threads", "-n", f"w{n}@%h", "--loglevel", "WARNING", "--without-gossip",
             "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=env, start_new_session=True,
        )
        for n in range(1, WORKERS + 1)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _test_database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def test_two_celery_workers_complete_every_task_exactly_once(
    simulator, settings, celery_workers, live_server
):
    simulator.delay = 0.5
    simulator.set_faults(latency=0.2)
    simulator.throttle(concurrent=CONCURRENCY)  # HiDream's limit: the app must stay inside it
    name = default_storage.save("products/shared.jpg", ContentFile(make_image_bytes()))
    products = Product.objects.bulk_create(
        [Product(name=f"Shirt {n}", sku=f"CEL-{n:04d}", price="10.00", image=name)
         for n in range(TASKS)]
    )
    options = services.GenerationOptions.validated(
        {"prompt": "studio portrait", "image_count": PICTURES}
    )
    started = time.monotonic()
    report = services.create_tasks_for_products(products, options)
    assert len(report.tasks) == TASKS

    def all_final():
        return not ModelImageTask.objects.exclude(
            status__in=[TaskStatus.SUCCEEDED, TaskStatus.PARTIAL, TaskStatus.FAILED]
        ).exists()

    wait_for(all_final, timeout=240, interval=1, message="every task to finish on Celery")
    elapsed = time.monotonic() - started

    assert ModelImageTask.objects.filter(status=TaskStatus.SUCCEEDED).count() == TASKS
    # One HTTP submit per task: HiDream accepted exactly as many tasks as we made.
    assert simulator.accepted_submits == TASKS
    assert len(set(ModelImageTask.objects.values_list("remote_task_id", flat=True))) == TASKS
    # One file per picture, each stored once under its stable name.
    images = GeneratedImage.objects.all()
    assert images.count() == TASKS * PICTURES
    assert images.filter(status=ImageStatus.STORED).count() == TASKS * PICTURES
    names = list(images.values_list("file", flat=True))
    assert len(set(names)) == len(names)
    stored = [p for p in Path(settings.MEDIA_ROOT, "hidream").rglob("*.jpg")]
    assert len(stored) == TASKS * PICTURES, "extra or missing files in storage"
    # The plan's concurrency held across both workers.
    assert simulator.throttled == 0
    assert simulator.max_concurrency_seen <= CONCURRENCY
    print(f"{TASKS} tasks x {PICTURES} pictures on {WORKERS} Celery workers in {elapsed:.1f} s")
