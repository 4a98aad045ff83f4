"""The callback receiver: security, validation, idempotency, transport surprises."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hidream_models.models import (
    CallbackEvent,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from tests import jobs

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def task(db):
    return ModelImageTask.objects.create(
        mode="prompt",
        prompt="summer look",
        image_count=2,
        status=TaskStatus.SUBMITTED,
        remote_task_id="remote-1",
        sub_task_ids=["sub-a", "sub-b"],
    )


def url(task, token=None):
    return reverse(
        "hidream_models:callback",
        kwargs={"task_id": task.pk, "token": token or task.callback_token},
    )


def result(*subs, task_id="remote-1"):
    return {
        "code": 0,
        "message": "Success",
        "request_id": "req-1",
        "result": {"task_id": task_id, "sub_task_results": list(subs)},
    }


def done(sub, image="http://127.0.0.1:9/x.jpg"):
    return {
        "sub_task_id": sub,
        "task_status": 1,
        "task_completion": 1,
        "image": image,
        "description": "",
    }


def post(client, path, body, **extra):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **extra)


def test_valid_callback_is_queued_then_stored_applied_and_queues_downloads(client, task):
    before = timezone.now()
    response = post(client, url(task), result(done("sub-a"), done("sub-b")))
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "outcome": "received"}
    # Answered once queued: the job carries the body, and stores and applies it.
    (job,) = jobs.pending_jobs()
    assert job.task.name == "receive_callback"
    assert job.args == [str(task.pk)] and "sub-a" in job.kwargs["body"]
    assert task.callback_token not in json.dumps([job.args, job.kwargs])
    assert not CallbackEvent.objects.exists()
    assert not GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).exists()

    assert jobs.apply_callbacks() == 1
    assert GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).count() == 2
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == "applied" and "sub-a" in event.body
    assert event.remote_addr == "127.0.0.1"
    # The time the view received it, not the time the job ran.
    assert before <= event.received_at <= datetime.fromisoformat(job.kwargs["received_at"])
    queued = [job.task.name for job in jobs.pending_jobs()]
    assert queued.count("download_generated_image") == 2


def test_wrong_token_is_404_and_writes_nothing(client, task, django_assert_num_queries):
    before = task.updated_at
    with django_assert_num_queries(0):  # the token is an HMAC: refused before any query
        response = post(client, url(task, token="x" * 64), result(done("sub-a")))
    assert response.status_code == 404
    assert not CallbackEvent.objects.exists()
    assert not jobs.pending_jobs()
    assert not GeneratedImage.objects.exists()
    task.refresh_from_db()
    assert task.updated_at == before


def test_unknown_task_answers_exactly_like_a_wrong_token(client, task):
    unknown = reverse(
        "hidream_models:callback", kwargs={"task_id": uuid.uuid4(), "token": task.callback_token}
    )
    wrong = post(client, url(task, token="nope"), result(done("sub-a")))
    missing = post(client, unknown, result(done("sub-a")))
    assert wrong.status_code == missing.status_code == 404
    assert wrong.content == missing.content
    assert not CallbackEvent.objects.exists()
    assert not jobs.pending_jobs()


def test_a_token_made_with_a_fallback_key_still_works(client, task, settings):
    old_token = task.callback_token
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-key-after-rotation-" + "k" * 40
    assert task.callback_token != old_token
    assert post(client, url(task, token=old_token), result(done("sub-a"))).status_code == 200
    settings.SECRET_KEY_FALLBACKS = []  # the old key dropped: its URLs stop working
    assert post(client, url(task, token=old_token), result(done("sub-a"))).status_code == 404


def test_a_callback_for_a_deleted_task_is_dropped_by_its_job(client, task, caplog):
    path = url(task)
    task.delete()
    # The token is right (only the key's holder can make one), so the body is queued...
    assert post(client, path, result(done("sub-a"))).status_code == 200
    # ...and its job, finding no task, stores nothing and says so.
    assert jobs.apply_callbacks() == 1
    assert not CallbackEvent.objects.exists()
    assert "no longer exists" in caplog.text


def test_ten_replays_make_no_duplicates(client, task):
    body = result(done("sub-a"), done("sub-b"))
    outcomes = [post(client, url(task), body).status_code for _ in range(10)]
    assert outcomes == [200] * 10
    assert jobs.apply_callbacks() == 10
    assert GeneratedImage.objects.filter(task=task).count() == 2
    assert CallbackEvent.objects.filter(task=task, outcome="applied").count() == 1
    assert CallbackEvent.objects.filter(task=task, outcome="unchanged").count() == 9
    downloads = [j for j in jobs.pending_jobs() if j.task.name.endswith("download_generated_image")]
    assert len(downloads) == 2


@pytest.mark.parametrize(
    "shape",
    [
        "envelope",
        "bare",
        "main_task_id",
    ],
)
def test_three_documented_body_shapes(client, task, shape):
    subs = [done("sub-a"), {"sub_task_id": "sub-b", "task_status": 3, "description": "bad pose"}]
    body = {
        "envelope": result(*subs),
        "bare": {"task_id": "remote-1", "sub_task_results": subs},
        "main_task_id": {"main_task_id": "remote-1", "sub_task_results": subs},
    }[shape]
    response = post(client, url(task), body)
    assert response.status_code == 200, response.content
    jobs.apply_callbacks()
    failed = GeneratedImage.objects.get(task=task, sub_task_id="sub-b")
    assert failed.status == ImageStatus.FAILED and "bad pose" in failed.failure_reason


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        (json.dumps({"result": {"task_id": "remote-1"}}), "sub_task_results"),
        (json.dumps({"sub_task_results": [{"sub_task_id": "sub-a"}]}), "task_status"),
        (
            json.dumps({"sub_task_results": [{"sub_task_id": "a", "task_status": "x"}]}),
            "task_status",
        ),
        (json.dumps({"code": 5001, "message": "boom", "result": None}), "5001"),
    ],
)
def test_malformed_bodies_get_400_naming_the_problem(client, task, body, expected):
    response = post(client, url(task), body)
    assert response.status_code == 400
    assert expected in response.json()["error"]
    assert CallbackEvent.objects.get(task=task).outcome == "invalid"
    assert not GeneratedImage.objects.filter(status=ImageStatus.DOWNLOADING).exists()


def test_result_for_another_hidream_task_is_stored_invalid_when_applied(client, task):
    # Well-formed, so accepted; only applying it (the job, which locks the task) can tell.
    response = post(client, url(task), result(done("sub-a"), task_id="someone-else"))
    assert response.status_code == 200
    assert jobs.apply_callbacks() == 1
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == "invalid" and "someone-else" in event.error
    assert not GeneratedImage.objects.filter(status=ImageStatus.DOWNLOADING).exists()


def test_a_stored_callback_is_applied_once(client, task):
    from hidream_models.services import apply_callback_event

    post(client, url(task), result(done("sub-a"), done("sub-b")))
    assert jobs.apply_callbacks() == 1
    event = CallbackEvent.objects.get()
    assert event.outcome == "applied"
    assert apply_callback_event(event.pk) is None  # a second job, or the sweep, after it
    assert CallbackEvent.objects.get().outcome == "applied"
    downloads = [j for j in jobs.pending_jobs() if j.task.name == "download_generated_image"]
    assert len(downloads) == 2


def test_oversize_body_is_413(client, task, settings):
    settings.HIDREAM_MAX_CALLBACK_BYTES = 2048
    body = result(done("sub-a"))
    body["padding"] = "x" * 5000
    response = post(client, url(task), body)
    assert response.status_code == 413
    assert not CallbackEvent.objects.exists()


def test_no_csrf_and_no_session_needed(task, admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)  # a session cookie must not switch CSRF on
    response = post(client, url(task), result(done("sub-a")))
    assert response.status_code == 200


def test_get_is_not_allowed_and_answered_in_json(client, task):
    response = client.get(url(task))
    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    assert response.json() == {"ok": False, "error": "Method GET not allowed; HiDream POSTs here."}
    assert not CallbackEvent.objects.exists()


def test_works_with_atomic_requests(client, settings, task):
    from django.db import connections

    connections["default"].settings_dict["ATOMIC_REQUESTS"] = True
    try:
        response = post(client, url(task), result(done("sub-a"), done("sub-b")))
    finally:
        connections["default"].settings_dict["ATOMIC_REQUESTS"] = False
    assert response.status_code == 200
    # The view runs outside the request's transaction: its job is queued, not held back.
    assert [job.task.name for job in jobs.pending_jobs()] == ["receive_callback"]
    assert jobs.apply_callbacks() == 1
    assert CallbackEvent.objects.get().outcome == "applied"


def test_secret_headers_are_not_stored(client, task):
    post(
        client,
        url(task),
        result(done("sub-a")),
        HTTP_AUTHORIZATION="Bearer leaked",
        HTTP_COOKIE="sessionid=abc",
        HTTP_X_TRACE="keep-me",
    )
    (job,) = jobs.pending_jobs()
    assert "leaked" not in json.dumps(job.kwargs) and "abc" not in json.dumps(job.kwargs)
    jobs.apply_callbacks()
    headers = CallbackEvent.objects.get().headers
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "authorization" not in lowered and "cookie" not in lowered
    assert lowered["x-trace"] == "keep-me"


def test_a_callback_stored_but_not_applied_is_applied_by_the_sweep(client, task):
    from hidream_models.services.callbacks import record_callback
    from hidream_models.services.limits import lease_seconds
    from hidream_models.services.polling import recover_interrupted_work

    # The job's first half, then the worker died: stored, still "received".
    record_callback(
        task.pk,
        body=json.dumps(result(done("sub-a"), done("sub-b"))),
        headers={},
        remote_addr="127.0.0.1",
    )
    event = CallbackEvent.objects.get()
    # Not yet: a job may still be on its way.
    assert recover_interrupted_work(now=timezone.now()) == 0
    assert CallbackEvent.objects.get().outcome == "received"

    later = event.received_at + timedelta(seconds=lease_seconds() + 1)
    assert recover_interrupted_work(now=later) == 1
    assert CallbackEvent.objects.get().outcome == "applied"
    assert GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).count() == 2


def test_a_callback_that_cannot_be_queued_is_503_so_hidream_sends_it_again(
    client, task, monkeypatch, caplog
):
    from hidream_models import webhooks

    class BrokenQueue:
        def enqueue(self, *args, **kwargs):
            raise ConnectionError("broker down")

    monkeypatch.setattr(webhooks, "receive_callback", BrokenQueue())
    response = post(client, url(task), result(done("sub-a")))
    assert response.status_code == 503
    assert "send it again" in response.json()["error"]
    assert "broker down" in caplog.text
    assert task.callback_token not in caplog.text
    assert not CallbackEvent.objects.exists()


def test_a_malformed_callback_for_a_deleted_task_is_still_400_and_stores_nothing(client, task):
    path = url(task)
    task.delete()
    response = post(client, path, "{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert not CallbackEvent.objects.exists()
