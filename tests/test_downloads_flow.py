"""Downloads in the task flow: one bad result fails only its own picture."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from hidream_models import services
from hidream_models.models import ImageStatus, ModelImageTask, TaskStatus
from hidream_models.payloads import parse_task_result
from tests.conftest import make_image_bytes
from tests.stub_server import StubServer

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failing_download_fails_only_its_picture(settings, run_jobs):
    settings.HIDREAM_MAX_ATTEMPTS = 2
    good = (200, {"Content-Type": "image/jpeg"}, make_image_bytes(), 0)
    broken = (500, {"Content-Type": "text/plain"}, b"oops", 0)
    # One server (the base URL's host and port: the only loopback one downloads may reach).
    with StubServer([good], routes={"/ko.jpg": broken}) as images:
        bad = images
        settings.HIDREAM_BASE_URL = images.url
        task = ModelImageTask.objects.create(
            mode="prompt",
            prompt="p",
            image_count=2,
            status=TaskStatus.SUBMITTED,
            remote_task_id="r",
            sub_task_ids=["ok", "ko"],
        )
        payload = parse_task_result(
            {
                "sub_task_results": [
                    {"sub_task_id": "ok", "task_status": 1, "image": f"{images.url}/ok.jpg"},
                    {"sub_task_id": "ko", "task_status": 1, "image": f"{bad.url}/ko.jpg"},
                ]
            }
        )
        services.apply_result(task.pk, payload, source="poll")
        run_jobs()
    task.refresh_from_db()
    ok, ko = task.images.get(sub_task_id="ok"), task.images.get(sub_task_id="ko")
    assert ok.status == ImageStatus.STORED and default_storage.exists(ok.file.name)
    assert ok.file.name == f"hidream/{task.pk}/ok.jpg"
    assert ko.status == ImageStatus.FAILED and "HTTP 500" in ko.failure_reason
    assert ko.download_attempts == 2
    assert [request[1] for request in bad.requests].count("/ko.jpg") == 2
    assert task.status == TaskStatus.PARTIAL
    assert not default_storage.exists(f"hidream/{task.pk}/ko.jpg")
