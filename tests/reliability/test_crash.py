"""Workers that die (SIGKILL) halfway: what they leave behind, and how the sweep moves it on.

Real processes: ``manage.py db_worker`` (django-tasks-db) with ``shop_demo.settings``, on the
database of the ``shared_db`` fixture (PostgreSQL's test database, or a SQLite file), and jobs
enqueued by the test into that database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from hidream_models import services
from hidream_models.models import ImageStatus, ModelImageTask, TaskStatus
from hidream_models.services.limits import lease_seconds
from hidream_models.services.polling import download_lease_seconds
from tests.conftest import wait_for
from tests.reliability.conftest import assert_complete_pictures, stored_files

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
PROMPT = {"prompt": "studio portrait", "image_count": 1}


@pytest.fixture
def start_worker(shared_db, simulator, settings, media_root, tmp_path):
    """Start ``manage.py db_worker`` processes on the shared database; killed at the end."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    started: list[tuple[subprocess.Popen, Path]] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop_demo.settings",
        "DATABASE_URL": shared_db.url,
        "MEDIA_ROOT": str(media_root),
        "DEBUG": "true",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        "HIDREAM_API_TOKEN": settings.HIDREAM_API_TOKEN,
        "HIDREAM_BASE_URL": simulator.base_url,
        "HIDREAM_CALLBACK_BASE_URL": "",
        "HIDREAM_MAX_CONCURRENT_REQUESTS": "0",
        "HIDREAM_MAX_IMAGES_PER_MINUTE": "0",
        "HIDREAM_READ_TIMEOUT": "30",
        "HIDREAM_RETRY_BACKOFF": "0.01",
        "HIDREAM_RETRY_BACKOFF_MAX": "0.05",
    }

    def start(name: str = "worker") -> subprocess.Popen:
        log = tmp_path / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "db_worker",
                    "--no-reload",
                    "--no-startup-delay",
                    "--interval",
                    "0.05",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        started.append((process, log))
        return process

    yield start
    for process, _log in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _kill(process: subprocess.Popen) -> None:
    assert process.poll() is None, "the worker died on its own"
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL


def _task(product) -> ModelImageTask:
    options = services.GenerationOptions.validated(PROMPT)
    return services.create_tasks_for_products([product], options).tasks[0]


def _fresh(task):
    task.refresh_from_db()
    return task


def _after_the_lease():
    """A moment when every lease a dead worker held has run out."""
    return timezone.now() + timedelta(seconds=lease_seconds() + 1)


def _status_is(task, *statuses):
    return lambda: ModelImageTask.objects.filter(pk=task.pk, status__in=statuses).exists()


def test_worker_killed_mid_submit_leaves_submitting_and_the_sweep_marks_it_unconfirmed(
    simulator, make_product, start_worker
):
    simulator.set_faults(latency=5.0)  # HiDream takes its time to answer
    task = _task(make_product())
    worker = start_worker()
    sent = ModelImageTask.objects.filter(pk=task.pk, request_sent_at__isnull=False)
    wait_for(sent.exists, timeout=30, message="the worker to send the submit")
    wait_for(lambda: simulator.max_concurrency_seen >= 1, message="the submit to reach HiDream")
    _kill(worker)

    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTING
    assert task.request_sent_at is not None and task.remote_task_id is None
    assert services.sync_pass().recovered == 0  # its lease has not run out yet

    report = services.sync_pass(now=_after_the_lease())
    assert report.recovered == 1
    task = _fresh(task)
    assert task.status == TaskStatus.UNCONFIRMED
    assert "the worker stopped while waiting for HiDream's answer" in task.error_message
    assert "not resent automatically" in task.error_message
    # Never resent: no job carries it, and later sweeps leave it for a person to decide.
    assert services.sync_pass(now=_after_the_lease() + timedelta(minutes=1)).recovered == 0
    assert not DBTaskResult.objects.ready().exists()
    assert _fresh(task).status == TaskStatus.UNCONFIRMED
    assert len(simulator.submissions) <= 1


def test_worker_killed_before_sending_is_queued_again_and_submitted_once(
    simulator, make_product, start_worker
):
    product = make_product()
    image = Path(default_storage.path(product.image.name))
    picture = image.read_bytes()
    image.unlink()
    os.mkfifo(image)  # reading the product image now blocks: the worker stops before sending
    task = _task(product)
    worker = start_worker()
    wait_for(_status_is(task, TaskStatus.SUBMITTING), timeout=30, message="the claim")
    time.sleep(0.5)
    assert _fresh(task).request_sent_at is None
    _kill(worker)
    assert simulator.max_concurrency_seen == 0 and simulator.submissions == []
    image.unlink()
    image.write_bytes(picture)

    assert _fresh(task).status == TaskStatus.SUBMITTING
    report = services.sync_pass(now=_after_the_lease())
    assert report.recovered == 1
    assert _fresh(task).status == TaskStatus.QUEUED  # never sent: safe to send
    assert DBTaskResult.objects.ready().count() == 1  # and a job carries it

    start_worker("second-worker")
    wait_for(_status_is(task, TaskStatus.SUBMITTED), timeout=30, message="the resubmission")
    task = _fresh(task)
    assert task.attempts == 2 and task.remote_task_id
    assert simulator.accepted_submits == 1 and len(simulator.submissions) == 1


def test_worker_killed_mid_download_leaves_downloading_and_the_sweep_stores_it_whole(
    simulator, make_product, start_worker, media_root
):
    simulator.set_faults(result_fault="slow", slow_seconds=30)
    task = _task(make_product())
    worker = start_worker()
    wait_for(_status_is(task, TaskStatus.SUBMITTED), timeout=30, message="the submit")
    task = _fresh(task)
    wait_for(
        lambda: (
            simulator.results(task.remote_task_id)["result"]["sub_task_results"][0]["task_status"]
            == 1
        ),
        message="HiDream to finish",
    )
    services.sync_task(task.pk)  # the poll: the picture is ready, a download job is queued
    image = task.images.get()
    assert image.status == ImageStatus.DOWNLOADING
    wait_for(
        lambda: [e for e in simulator.fault_events if e[0] == "result_fault: slow"],
        timeout=30,
        message="the worker to start downloading",
    )
    time.sleep(1.0)  # a few chunks of the picture have arrived
    _kill(worker)

    image.refresh_from_db()
    assert image.status == ImageStatus.DOWNLOADING
    assert image.download_attempts == 1 and image.next_attempt_at is None
    assert not image.file
    assert stored_files(media_root / "hidream") == []  # nothing partial reached storage

    simulator.set_faults(result_fault=None)
    assert services.sync_pass().recovered == 0  # not stale yet
    later = timezone.now() + timedelta(seconds=download_lease_seconds() + 1)
    report = services.sync_pass(now=later)
    assert report.recovered == 1
    start_worker("second-worker")
    stored = task.images.filter(status=ImageStatus.STORED)
    wait_for(stored.exists, timeout=30, message="the download to be done again")

    image.refresh_from_db()
    assert _fresh(task).status == TaskStatus.SUCCEEDED
    assert image.download_attempts == 2
    files = assert_complete_pictures(media_root)  # products and results: all whole pictures
    results = [path for path in files if path.is_relative_to(media_root / "hidream")]
    assert results == [media_root / image.file.name]
    assert image.bytes == results[0].stat().st_size
