"""Races: a storm of duplicate callbacks, applied at once, against polling; workers racing.

On PostgreSQL everything here runs in parallel for real. On SQLite, the callback storm is
serialised (see serial_urls: pytest-django's live server shares one in-memory SQLite
connection between its request threads), while the worker races run on a SQLite *file*
(``shared_db``) where they are real races too.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import requests
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from hidream_models import services
from hidream_models.models import (
    CallbackEvent,
    CallbackOutcome,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from hidream_models.services import callbacks
from tests import jobs
from tests.conftest import wait_for
from tests.reliability.conftest import assert_complete_pictures, run_threads, stored_files

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DOWNLOAD = "download_generated_image"
APPLY = "apply_received_callbacks"
WORKERS = 4
STORM = 20


def _task(make_product, image_count: int = 1) -> ModelImageTask:
    options = services.GenerationOptions.validated(
        {"prompt": "studio portrait", "image_count": image_count}
    )
    return services.create_tasks_for_products([make_product()], options).tasks[0]


def _wait_remote_finished(sim, task) -> None:
    def finished():
        items = sim.results(task.remote_task_id)["result"]["sub_task_results"]
        return all(item["task_status"] == 1 for item in items)

    wait_for(finished, message="HiDream to finish the task")


def test_twenty_concurrent_duplicate_callbacks_while_polling_store_each_picture_once(
    simulator,
    settings,
    make_product,
    run_jobs,
    live_server,
    callback_guard,
    media_root,
    monkeypatch,
):
    settings.HIDREAM_CALLBACK_GRACE = 0
    # All 20 in one batch, applied by the 4 jobs below, not by the poller's sweep, however
    # slowly a busy machine delivers them.
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 60
    monkeypatch.setattr(callbacks, "UNAPPLIED_AFTER", timedelta(hours=1))
    settings.HIDREAM_POLL_INTERVAL = 1
    simulator.send_callbacks = False  # this test delivers them, all at once
    task = _task(make_product, image_count=2)
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUBMITTED
    _wait_remote_finished(simulator, task)
    body = json.dumps(simulator.results(task.remote_task_id), ensure_ascii=False).encode()
    path = reverse(
        "hidream_models:callback", kwargs={"task_id": task.pk, "token": task.callback_token}
    )
    url = live_server.url + path

    start = threading.Barrier(STORM + 1)
    done = threading.Event()
    replies: list[int] = []
    outcomes: list = []
    polls = {"passes": 0, "changed": 0, "errors": []}

    def deliver():
        start.wait(timeout=10)
        response = requests.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        replies.append(response.status_code)

    def apply():
        # 4 workers run the job that applies the stored callbacks at the same time, each
        # over all 20 (on SQLite one job at a time, see serial_urls).
        try:
            with callback_guard:
                outcomes.append(services.apply_received_callbacks())
        finally:
            connections.close_all()

    def poll():
        start.wait(timeout=10)
        try:
            while not done.is_set():
                with callback_guard:  # on SQLite: not while a callback is being applied
                    report = services.sync_pass(now=timezone.now() + timedelta(seconds=2))
                    outcome = services.sync_task(task.pk)
                polls["passes"] += 1
                polls["changed"] += report.changed + bool(outcome and outcome.changed)
                time.sleep(0.005)  # a lock is not fair: let the deliveries in between passes
        except Exception as exc:
            polls["errors"].append(repr(exc))
        finally:
            connections.close_all()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run_threads([deliver] * STORM)  # each is stored, and a job queued to apply them
        assert replies == [200] * STORM  # no 500, no 409: every duplicate is simply accepted
        assert len(jobs.take(APPLY)) == 1  # one live server process, one window: one job
        run_threads([apply] * WORKERS)
    finally:
        done.set()
        poller.join(timeout=30)

    assert len(outcomes) == WORKERS and sum(outcomes) == STORM  # each applied once
    assert polls["errors"] == [] and polls["passes"] >= 1
    events = CallbackEvent.objects.filter(task=task)
    assert events.count() == STORM
    assert not events.exclude(outcome__in=[CallbackOutcome.APPLIED, CallbackOutcome.UNCHANGED])
    applied = events.filter(outcome=CallbackOutcome.APPLIED).count()
    assert applied + polls["changed"] == 1, (applied, polls)  # one delivery made the change

    pending = [job.task.name for job in jobs.pending_jobs()]
    assert pending.count(DOWNLOAD) == 2  # one download per picture, not one per delivery
    assert run_jobs().count(DOWNLOAD) == 2
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCEEDED
    images = list(GeneratedImage.objects.filter(task=task))
    assert sorted(image.sub_task_id for image in images) == sorted(task.sub_task_ids)
    assert all(image.status == ImageStatus.STORED for image in images)
    assert all(image.download_attempts == 1 for image in images)
    files = stored_files(media_root / "hidream")
    assert sorted(path.name for path in files) == sorted(
        image.file.name.rsplit("/", 1)[-1] for image in images
    )
    assert_complete_pictures(media_root / "hidream")


def test_two_workers_racing_submit_task_on_the_same_task_make_one_http_submit(
    simulator, shared_db, make_product
):
    simulator.set_faults(latency=0.3)  # the winner is still sending when the loser arrives
    tasks = [_task(make_product) for _ in range(5)]
    start = threading.Barrier(2 * len(tasks))
    outcomes: dict = {task.pk: [] for task in tasks}
    errors: list[str] = []

    def worker(task_id):
        def run():
            shared_db.bind()  # its own connection to the shared database
            try:
                start.wait(timeout=10)
                outcomes[task_id].append(services.submit_task(task_id))
            except Exception as exc:
                errors.append(repr(exc))
            finally:
                connections.close_all()

        return run

    run_threads([worker(task.pk) for task in tasks for _ in range(2)])

    assert errors == []
    for task in tasks:
        assert sorted(outcomes[task.pk], key=str) == [None, TaskStatus.SUBMITTED]
        task.refresh_from_db()
        assert task.status == TaskStatus.SUBMITTED and task.attempts == 1
    assert simulator.accepted_submits == len(tasks)
    assert len(simulator.submissions) == len(tasks)
    remote_ids = set(ModelImageTask.objects.values_list("remote_task_id", flat=True))
    assert len(remote_ids) == len(tasks)


def test_two_workers_racing_the_same_download_store_one_whole_file(
    simulator, settings, shared_db, make_product, media_root
):
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    simulator.set_faults(result_latency=0.3)  # both are downloading at the same time
    task = _task(make_product)
    assert services.submit_task(task.pk) == TaskStatus.SUBMITTED
    task.refresh_from_db()
    _wait_remote_finished(simulator, task)
    services.sync_task(task.pk)
    image = task.images.get()
    assert image.status == ImageStatus.DOWNLOADING
    start = threading.Barrier(2)
    outcomes, errors = [], []

    def download():
        shared_db.bind()
        try:
            start.wait(timeout=10)
            outcomes.append(services.download_result(image.pk))
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connections.close_all()

    run_threads([download, download])

    assert errors == []
    assert outcomes == [ImageStatus.STORED, ImageStatus.STORED]
    image.refresh_from_db()
    assert image.status == ImageStatus.STORED
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCEEDED
    files = assert_complete_pictures(media_root / "hidream")
    assert files == [media_root / image.file.name]  # the loser's copy was not kept
