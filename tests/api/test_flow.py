"""The whole API walk against the HiDream simulator on loopback, and the callback token.

Create a task through the API, let the worker submit it, ask for a refresh until HiDream is
done, let the worker copy the pictures home, then read and review them through the API.
Every response body and header of the walk is recorded and checked for the callback token.
"""

from __future__ import annotations

import pytest
from PIL import Image

from hidream_models.models import ModelImageTask, TaskStatus
from tests.api.helpers import (
    BULK,
    IMAGES,
    PROMPT,
    TASKS,
    TEMPLATE,
    TEMPLATES,
    b64,
    body,
    image_url,
    png_bytes,
    product_ref,
    task_url,
)
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class Recorder:
    """Wraps an API client; keeps every response for the secrecy check at the end."""

    def __init__(self, client):
        self.client = client
        self.responses = []

    def __getattr__(self, method):
        call = getattr(self.client, method)

        def record(*args, **kwargs):
            response = call(*args, **kwargs)
            self.responses.append(response)
            return response

        return record

    def raw(self) -> list[bytes]:
        """Each response as bytes: status line, headers and body."""
        out = []
        for response in self.responses:
            headers = "\n".join(f"{k}: {v}" for k, v in response.items())
            out.append(f"{response.status_code}\n{headers}\n\n".encode() + response.content)
        return out


def assert_no_token_in(recorder: Recorder) -> None:
    tokens = [task.callback_token for task in ModelImageTask.objects.all()]
    assert tokens and all(len(token) >= 32 for token in tokens)
    for raw in recorder.raw():
        assert b"callback_token" not in raw
        assert b"/hidream/callback/" not in raw
        for token in tokens:
            assert token.encode() not in raw, "a callback token leaked into an API response"


@pytest.fixture
def walk_settings(settings, simulator):
    # A public callback base, so the notify_url sent to HiDream contains the token; the
    # simulator is told not to call it (it is not reachable) and results come by polling.
    settings.HIDREAM_CALLBACK_BASE_URL = "https://shop.example.com"
    settings.HIDREAM_API_CREATE_RATE = ""
    simulator.send_callbacks = False
    return simulator


def test_full_walk_through_the_api(api, walk_settings, make_product, run_jobs):
    simulator = walk_settings
    rec = Recorder(api)
    product = make_product()

    created = rec.post(TASKS, {"product": product_ref(product), **TEMPLATE, "image_count": 2})
    assert created.status_code == 201, created.content
    task_id = body(created)["id"]
    assert run_jobs() == ["dispatch_submissions", "submit_model_image"]
    sent = simulator.submissions[-1]
    task = ModelImageTask.objects.get(pk=task_id)
    assert task.callback_token in sent["notify_url"]  # the token exists and went to HiDream

    submitted = body(rec.get(task_url(task_id)))
    assert submitted["status"] in ("submitted", "processing")
    assert submitted["remote_task_id"] == task.remote_task_id
    assert submitted["submitted_at"]

    def finished():
        refreshed = rec.post(f"{task_url(task_id)}refresh/")
        if refreshed.status_code == 409:  # no longer at HiDream: done
            return True
        assert refreshed.status_code == 202, refreshed.content
        run_jobs()
        return False

    wait_for(finished, timeout=15, interval=0.2, message="HiDream to finish the task")
    run_jobs()  # any download still queued

    done = rec.get(task_url(task_id))
    data = body(done)
    assert data["status"] == "succeeded", data
    assert data["finished_at"]
    pictures = data["images"]
    assert [p["position"] for p in pictures] == [0, 1]
    for picture in pictures:
        assert picture["status"] == "stored", picture["failure_reason"]
        assert picture["file_url"].startswith(f"http://testserver/media/hidream/{task_id}/")
        assert picture["remote_url"].startswith(simulator.base_url)
        assert picture["review_state"] == "unreviewed"
        assert picture["failure_reason"] == ""
        stored = task.images.get(pk=picture["id"])
        with Image.open(stored.file.path) as image:
            assert image.size == (picture["width"], picture["height"])
        assert picture["bytes"] == stored.file.size

    listed = rec.get(IMAGES, {"task": task_id, "status": "stored"})
    assert [p["id"] for p in body(listed)["results"]] == [p["id"] for p in pictures]
    approved = rec.post(f"{image_url(pictures[0]['id'])}approve/")
    assert body(approved)["review_state"] == "approved"
    rejected = rec.post(f"{image_url(pictures[1]['id'])}reject/")
    assert body(rejected)["review_state"] == "rejected"
    assert body(rec.get(IMAGES, {"review_state": "approved"}))["count"] == 1
    assert_no_token_in(rec)


def test_no_response_of_any_endpoint_shows_the_callback_token(
    api, walk_settings, make_product, task_factory, image_factory, run_jobs
):
    rec = Recorder(api)
    products = [make_product() for _ in range(3)]
    rec.post(TASKS, {"product": product_ref(products[0]), **PROMPT}, HTTP_IDEMPOTENCY_KEY="k-1")
    rec.post(TASKS, {"product": product_ref(products[0]), **PROMPT}, HTTP_IDEMPOTENCY_KEY="k-1")
    rec.post(TASKS, {"image": "https://images.example.com/a.jpg", **TEMPLATE})
    rec.post(TASKS, {"image": "data:image/png;base64," + b64(png_bytes()), **PROMPT})
    rec.post(BULK, {"products": [product_ref(p) for p in products[1:]], **PROMPT})
    run_jobs()  # submit them all to the simulator, notify_url (with the token) included

    failed = task_factory(products[0], TaskStatus.FAILED)
    unconfirmed = task_factory(products[1], TaskStatus.UNCONFIRMED)
    partial = task_factory(products[2], TaskStatus.PARTIAL, remote_task_id="rt-partial")
    stored = image_factory(partial, 0)
    image_factory(partial, 1, "failed", failure_reason="refused")

    rec.post(f"{task_url(failed)}retry/")
    rec.post(f"{task_url(unconfirmed)}retry/")  # 409
    rec.post(f"{task_url(unconfirmed)}retry/", {"resend_unconfirmed": True})
    rec.post(f"{task_url(partial)}refresh/")  # 409
    submitted = ModelImageTask.objects.filter(status=TaskStatus.SUBMITTED).first()
    assert submitted is not None
    rec.post(f"{task_url(submitted)}refresh/")
    rec.post(TASKS, {"product": "catalog.product:999999", **PROMPT})  # 400
    for task in ModelImageTask.objects.all():
        rec.get(task_url(task))
    rec.get(TASKS)
    rec.get(TASKS, {"page_size": 200, "ordering": "status"})
    rec.get(IMAGES)
    rec.get(image_url(stored))
    rec.post(f"{image_url(stored)}approve/")
    rec.get(TEMPLATES)
    statuses = sorted({r.status_code for r in rec.responses})
    assert statuses == [200, 201, 202, 400, 409], statuses
    assert ModelImageTask.objects.count() >= 10
    assert_no_token_in(rec)
