"""The core loop over real HTTP: app → simulator → callback (or polling) → files in storage."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from hidream_models import services, signals
from hidream_models.models import (
    CallbackEvent,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from tests import jobs
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEMPLATE = {"template": {"human_template_id": "h-001", "scene_template_id": "s-001"}}


def _options(**overrides):
    data = {**TEMPLATE, "image_count": 2, **overrides}
    return services.GenerationOptions.validated(data)


def _assert_pictures_stored(task: ModelImageTask, count: int) -> None:
    images = list(task.images.order_by("position"))
    assert len(images) == count
    digests = set()
    for image in images:
        assert image.status == ImageStatus.STORED, image.failure_reason
        assert image.file.name.startswith(f"hidream/{task.pk}/")
        assert default_storage.exists(image.file.name)
        with default_storage.open(image.file.name, "rb") as fh:
            data = fh.read()
            digests.add(hash(data))
        assert image.bytes == len(data)
        with Image.open(default_storage.path(image.file.name)) as pic:
            assert pic.size == (image.width, image.height)
    assert len(digests) == count, "each sub-task must give a different picture"


def test_callback_path_ends_with_files_in_storage(
    simulator, live_server, settings, make_product, run_jobs
):
    settings.HIDREAM_CALLBACK_BASE_URL = live_server.url
    received = {"submitted": 0, "finished": 0, "ready": 0}

    def count(name):
        def receiver(**kwargs):
            received[name] += 1

        return receiver

    receivers = [count("submitted"), count("finished"), count("ready")]
    signals.task_submitted.connect(receivers[0])
    signals.task_finished.connect(receivers[1])
    signals.image_ready.connect(receivers[2])
    try:
        product = make_product()
        report = services.create_tasks_for_products([product], _options())
        task = report.tasks[0]
        run_jobs()  # dispatch + submit
        task.refresh_from_db()
        assert task.status in (TaskStatus.SUBMITTED, TaskStatus.PROCESSING)
        assert task.remote_task_id and len(task.sub_task_ids) == 2
        sent = simulator.submissions[-1]
        assert sent["notify_url"].startswith(f"{live_server.url}/hidream/callback/{task.pk}/")

        # The simulator calls back after its delay; the view stores it and queues the job
        # that applies it, which queues the downloads.
        wait_for(lambda: CallbackEvent.objects.filter(task=task).exists(), message="callback")
        wait_for(
            lambda: [j.task.name for j in jobs.pending_jobs()] == ["apply_received_callbacks"],
            message="the callback stored and queued",
        )
        assert run_jobs() == ["apply_received_callbacks"] + ["download_generated_image"] * 2
        task.refresh_from_db()
        assert task.status == TaskStatus.SUCCEEDED
        _assert_pictures_stored(task, 2)
        event = CallbackEvent.objects.get(task=task)
        assert event.outcome == "applied"
        assert received == {"submitted": 1, "finished": 1, "ready": 2}
    finally:
        signals.task_submitted.disconnect(receivers[0])
        signals.task_finished.disconnect(receivers[1])
        signals.image_ready.disconnect(receivers[2])


def test_polling_path_without_callbacks(simulator, settings, make_product, run_jobs):
    settings.HIDREAM_CALLBACK_BASE_URL = ""  # no notify_url at all: polling only
    settings.HIDREAM_POLL_INTERVAL = 1
    product = make_product()
    task = services.create_tasks_for_products([product], _options(image_count=3)).tasks[0]
    run_jobs()
    assert "notify_url" not in simulator.submissions[-1]

    def finished_remotely():
        services.sync_pass()
        return GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).count() == 3

    wait_for(finished_remotely, timeout=15, interval=0.3, message="polling to see the result")
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCEEDED
    assert task.last_polled_at is not None and task.last_callback_at is None
    _assert_pictures_stored(task, 3)


def test_lost_callback_is_completed_by_polling(
    simulator, live_server, settings, make_product, run_jobs
):
    settings.HIDREAM_CALLBACK_BASE_URL = live_server.url
    settings.HIDREAM_CALLBACK_GRACE = 0
    settings.HIDREAM_POLL_INTERVAL = 1
    simulator.send_callbacks = False  # HiDream "loses" the callback
    task = services.create_tasks_for_products([make_product()], _options(image_count=1)).tasks[0]
    run_jobs()

    def done():
        services.sync_pass()
        return GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).exists()

    wait_for(done, timeout=15, interval=0.3, message="polling fallback")
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUCCEEDED
    assert not CallbackEvent.objects.filter(task=task).exists()


def test_prompt_mode_and_failed_sub_task_make_a_partial_task(
    simulator, settings, make_product, run_jobs
):
    simulator.forced_statuses = [1, 4]  # second picture rejected by moderation
    settings.HIDREAM_POLL_INTERVAL = 1
    options = services.GenerationOptions.validated(
        {"prompt": "a model in a park", "image_count": 2}
    )
    task = services.create_tasks_for_products([make_product()], options).tasks[0]
    run_jobs()
    assert simulator.submissions[-1]["prompt"] == "a model in a park"

    def settled():
        services.sync_pass()
        run_jobs()
        task.refresh_from_db()
        return task.is_final

    wait_for(settled, timeout=15, interval=0.3, message="the task to finish")
    assert task.status == TaskStatus.PARTIAL
    failed = task.images.get(status=ImageStatus.FAILED)
    assert "moderation" in failed.failure_reason
    assert task.images.filter(status=ImageStatus.STORED).count() == 1


def test_missing_product_image_fails_without_remote_call(simulator, make_product, run_jobs):
    product = make_product()
    task = services.create_tasks_for_products([product], _options()).tasks[0]
    default_storage.delete(product.image.name)
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert "missing" in task.error_message
    assert simulator.submissions == []


def test_non_image_product_file_fails_without_remote_call(simulator, make_product, run_jobs):
    product = make_product()
    with open(default_storage.path(product.image.name), "wb") as fh:
        fh.write(b"this is not a picture")
    task = services.create_tasks_for_products([product], _options()).tasks[0]
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert "not an image" in task.error_message
    assert simulator.submissions == []


def test_business_error_fails_with_hidream_code(simulator, make_product, run_jobs):
    options = services.GenerationOptions.validated(
        {"template": {"human_template_id": "no-such", "scene_template_id": "s-001"}}
    )
    task = services.create_tasks_for_products([make_product()], options).tasks[0]
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.error_code not in (None, 0)
    assert "human_template_id" in task.error_message


def test_products_without_image_are_skipped(simulator, make_product, run_jobs):
    with_image, without = make_product(), make_product(with_image=False)
    report = services.create_tasks_for_products([with_image, without], _options())
    assert [t.object_id for t in report.tasks] == [str(with_image.pk)]
    assert report.skipped[0][0] == without
