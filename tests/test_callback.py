"""The callback receiver: security, validation, idempotency, transport surprises."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from hidream_models.conf import hidream_settings
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


def test_valid_callback_is_stored_then_applied_by_a_job_that_queues_downloads(client, task):
    before = timezone.now()
    response = post(client, url(task), result(done("sub-a"), done("sub-b")))
    assert response.status_code == 200, response.content
    assert response.json() == {"ok": True, "outcome": "received"}
    # Answered once stored: applying it is a job of its own, deferred by the batch window.
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == "received" and "sub-a" in event.body
    assert event.remote_addr == "127.0.0.1" and event.received_at >= before
    (job,) = jobs.pending_jobs()
    assert job.task.name == "apply_received_callbacks" and job.args == []
    window = hidream_settings.CALLBACK_BATCH_WINDOW
    assert timedelta(seconds=window) < job.task.run_after - before < timedelta(seconds=5)
    assert not GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).exists()

    assert jobs.apply_callbacks() == 1
    assert GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).count() == 2
    event.refresh_from_db()
    assert event.outcome == "applied"
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


def test_a_callback_for_a_deleted_task_is_404_and_stores_nothing(client, task, caplog):
    path = url(task)
    task.delete()
    # The token is right (only the key's holder can make one), but there is no task.
    response = post(client, path, result(done("sub-a")))
    assert response.status_code == 404 and response.json()["error"] == "Not found."
    assert not CallbackEvent.objects.exists()
    assert not jobs.pending_jobs()
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
        (json.dumps({"sub_task_results": {"sub_task_id": "a"}}), "sub_task_results"),
        (json.dumps({"code": 5001, "message": "boom", "result": None}), "5001"),
    ],
)
def test_bodies_that_are_no_task_result_get_400_naming_the_problem(client, task, body, expected):
    response = post(client, url(task), body)
    assert response.status_code == 400
    assert expected in response.json()["error"]
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == "invalid" and expected in event.error
    assert not jobs.pending_jobs()
    assert not GeneratedImage.objects.filter(status=ImageStatus.DOWNLOADING).exists()


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ([{"sub_task_id": "sub-a"}], "sub_task_results.0.task_status"),
        ([{"sub_task_id": "sub-a", "task_status": "x"}], "sub_task_results.0.task_status"),
        ([dict(done("sub-a")), {"sub_task_id": 7, "task_status": 1}], "1.sub_task_id"),
    ],
)
def test_a_task_result_with_wrong_fields_is_kept_and_marked_invalid_by_its_job(
    client, task, items, expected
):
    # A 200: HiDream sending the same body again would not mend it. The job that applies
    # callbacks checks the fields, keeps the body and says what was wrong.
    response = post(client, url(task), {"task_id": "remote-1", "sub_task_results": items})
    assert response.status_code == 200
    assert jobs.apply_callbacks() == 1
    event = CallbackEvent.objects.get(task=task)
    assert event.outcome == "invalid" and expected in event.error, event.error
    assert "not a HiDream task result" in event.error
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
    event = CallbackEvent.objects.get()
    assert apply_callback_event(event.pk) == "applied"
    assert apply_callback_event(event.pk) is None  # a second job, or the sweep, after it
    assert jobs.apply_callbacks() == 0  # the queued job finds it applied: nothing more
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
    # The view runs outside the request's transaction: stored and queued, not held back.
    assert [job.task.name for job in jobs.pending_jobs()] == ["apply_received_callbacks"]
    assert CallbackEvent.objects.get().outcome == "received"


def test_secret_headers_are_not_stored(client, task):
    post(
        client,
        url(task),
        result(done("sub-a")),
        HTTP_AUTHORIZATION="Bearer leaked",
        HTTP_COOKIE="sessionid=abc",
        HTTP_X_TRACE="keep-me",
    )
    headers = CallbackEvent.objects.get().headers
    lowered = {k.lower(): v for k, v in headers.items()}
    assert "authorization" not in lowered and "cookie" not in lowered
    assert lowered["x-trace"] == "keep-me"


def test_a_callback_whose_job_was_lost_is_applied_by_the_sweep(client, task):
    from hidream_models.services.polling import recover_interrupted_work

    post(client, url(task), result(done("sub-a"), done("sub-b")))
    jobs.clear_jobs()  # the worker died with the job
    event = CallbackEvent.objects.get()
    # Not yet: a job may still be on its way.
    assert recover_interrupted_work(now=timezone.now()) == 0
    assert CallbackEvent.objects.get().outcome == "received"

    assert recover_interrupted_work(now=event.received_at + timedelta(seconds=9)) == 0
    later = event.received_at + callbacks.UNAPPLIED_AFTER + timedelta(seconds=1)
    assert recover_interrupted_work(now=later) == 1
    assert CallbackEvent.objects.get().outcome == "applied"
    assert GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).count() == 2


def test_a_callback_whose_job_cannot_be_queued_is_kept_for_the_sweep(
    client, task, monkeypatch, caplog
):
    from django.tasks.base import Task

    def broken_queue(self, *args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(Task, "enqueue", broken_queue)
    response = post(client, url(task), result(done("sub-a")))
    # Stored before the job was asked for: HiDream has delivered it.
    assert response.status_code == 200
    assert CallbackEvent.objects.get(task=task).outcome == "received"
    assert "broker down" in caplog.text and "hidream_sync will pick them up" in caplog.text
    assert task.callback_token not in caplog.text
    assert not jobs.pending_jobs()

    # The window that had no job is closed: the next callback queues one, which applies both.
    monkeypatch.undo()
    assert post(client, url(task), result(done("sub-b"))).status_code == 200
    assert jobs.apply_callbacks() == 2
    assert not CallbackEvent.objects.filter(outcome=CallbackOutcome.RECEIVED).exists()


def test_a_database_failure_while_storing_is_503_and_keeps_the_token_out_of_the_logs(
    client, task, monkeypatch, caplog
):
    from django.db import OperationalError

    from hidream_models import webhooks

    def database_down(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(webhooks, "store_callback", database_down)
    client.raise_request_exception = False
    response = post(client, url(task), result(done("sub-a")))
    assert response.status_code == 503
    assert "send it again" in response.json()["error"]
    assert "database is locked" in caplog.text
    assert task.callback_token not in caplog.text
    assert not jobs.pending_jobs()


def test_a_callback_whose_applying_fails_outside_its_savepoint_does_not_stop_the_others(
    client, task, settings, monkeypatch, caplog
):
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 5
    for sub in ("sub-a", "sub-b"):
        post(client, url(task), result(done(sub)))
    first, second = CallbackEvent.objects.order_by("pk")
    real_apply = callbacks.apply_callback_event

    def apply_callback_event(event_id, **kwargs):
        if event_id == first.pk:
            raise callbacks.IntegrityError("connection lost")  # a DatabaseError, say
        return real_apply(event_id, **kwargs)

    monkeypatch.setattr(callbacks, "apply_callback_event", apply_callback_event)
    assert callbacks.apply_received_callbacks() == 1
    assert CallbackEvent.objects.get(pk=first.pk).outcome == "received"  # for the sweep
    assert CallbackEvent.objects.get(pk=second.pk).outcome == "applied"
    assert f"Applying HiDream callback {first.pk} failed" in caplog.text


def test_a_malformed_callback_for_a_deleted_task_is_still_400_and_stores_nothing(client, task):
    path = url(task)
    task.delete()
    response = post(client, path, "{not json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    assert not CallbackEvent.objects.exists()


# -- batches: one apply_received_callbacks job per web process and HIDREAM_CALLBACK_BATCH_WINDOW,
# deferred so that it finds every callback stored meanwhile (services.callbacks) ----------------

APPLY_JOB = "apply_received_callbacks"


def _apply_jobs() -> list:
    return [job for job in jobs.pending_jobs() if job.task.name == APPLY_JOB]


def test_callbacks_within_the_window_share_one_job_deferred_by_twice_the_window(
    client, task, settings
):
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 5  # long enough that no test run outlasts it
    before = timezone.now()
    for _ in range(3):
        assert post(client, url(task), result(done("sub-a"), done("sub-b"))).status_code == 200
    assert CallbackEvent.objects.filter(outcome=CallbackOutcome.RECEIVED).count() == 3
    (job,) = _apply_jobs()
    assert timedelta(seconds=10) <= job.task.run_after - before < timedelta(seconds=11)
    # The one job applies all three (the first changes the task, the others change nothing).
    assert jobs.run_only(APPLY_JOB) == [3]
    outcomes = sorted(CallbackEvent.objects.values_list("outcome", flat=True))
    assert outcomes == ["applied", "unchanged", "unchanged"]


def test_a_callback_after_the_window_gets_a_job_of_its_own(client, task, settings):
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 0.2
    post(client, url(task), result(done("sub-a")))
    time.sleep(0.25)
    post(client, url(task), result(done("sub-b")))
    assert len(_apply_jobs()) == 2


def test_window_zero_queues_one_job_per_callback_at_once(client, task, settings):
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 0
    post(client, url(task), result(done("sub-a")))
    post(client, url(task), result(done("sub-b")))
    queued = _apply_jobs()
    assert len(queued) == 2 and all(job.task.run_after is None for job in queued)


def test_a_backend_that_cannot_defer_applies_each_callback_at_once(client, task, settings):
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}
    assert post(client, url(task), result(done("sub-a"), done("sub-b"))).status_code == 200
    # The immediate backend ran the job (and the downloads it queued) inside the request.
    assert CallbackEvent.objects.get().outcome == "applied"
    assert not task.images.filter(status=ImageStatus.PENDING).exists()


def test_one_process_opens_one_window_however_many_threads_ask():
    batcher = callbacks._Batcher()
    start = threading.Barrier(8)
    answers = []

    def ask():
        start.wait(timeout=5)
        answers.append(batcher.due(5.0))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert sorted(answers) == [False] * 7 + [True]
    batcher.reset()
    assert batcher.due(5.0)


def test_the_job_applies_oldest_first_and_goes_on_after_a_failure(
    client, task, settings, monkeypatch
):
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 5
    for sub in ("sub-a", "sub-b"):
        post(client, url(task), result(done(sub)))
    first, second = CallbackEvent.objects.order_by("received_at", "pk")
    applied_order = []
    real_apply = callbacks.apply_result

    def apply_result(task_id, payload, **kwargs):
        applied_order.append(payload.sub_task_results[0].sub_task_id)
        if len(applied_order) == 1:
            raise RuntimeError("storage hiccup")
        return real_apply(task_id, payload, **kwargs)

    monkeypatch.setattr(callbacks, "apply_result", apply_result)
    assert callbacks.apply_received_callbacks() == 1  # the one that failed is not settled
    assert applied_order == ["sub-a", "sub-b"]
    first.refresh_from_db()
    second.refresh_from_db()
    # Not the body's fault: kept for the sweep, with the attempt counted.
    assert first.outcome == "received" and first.attempts == 1
    assert "storage hiccup" in first.error and "storage hiccup" in first.traceback
    assert second.outcome == "applied"
    # A failed one is the sweep's (which backs off), not the next job's.
    assert callbacks.apply_received_callbacks() == 0
    assert applied_order == ["sub-a", "sub-b"]


def test_more_callbacks_than_one_query_fetches_are_all_applied(client, task, settings):
    settings.HIDREAM_CALLBACK_BATCH_WINDOW = 5
    count = callbacks.APPLY_BATCH + 5
    for _ in range(count):
        post(client, url(task), result(done("sub-a")))
    assert callbacks.apply_received_callbacks() == count
    assert not CallbackEvent.objects.filter(outcome=CallbackOutcome.RECEIVED).exists()


# -- every request is answered by the view itself: any verb, any failure, with or without the
# trailing slash (Django's own answers would log the path, and so the token) -------------------


@pytest.mark.parametrize("debug", [False, True], ids=["production", "DEBUG"])
def test_a_post_without_the_trailing_slash_is_received_not_redirected(
    client, task, settings, debug
):
    # APPEND_SLASH would redirect it (HiDream does not follow a redirect with its POST), or
    # when DEBUG raise a RuntimeError: a 500.
    settings.DEBUG = debug
    client.raise_request_exception = False
    response = post(client, url(task).rstrip("/"), result(done("sub-a")))
    assert response.status_code == 200, response.content[:300]
    assert CallbackEvent.objects.get(task=task).outcome == "received"


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "PATCH", "DELETE", "TRACE", "BREW"])
def test_every_other_verb_is_a_json_405_the_view_answers(client, task, method):
    response = client.generic(method, url(task))
    assert response.status_code == 405
    assert response["Allow"] == "POST, OPTIONS"
    assert response._has_been_logged  # so Django logs no "Method Not Allowed: <path>"
    if method != "HEAD":
        assert response.json()["ok"] is False and method in response.json()["error"]
    assert not CallbackEvent.objects.exists()


def test_an_unexpected_failure_is_a_json_500_answered_by_the_view(client, task, monkeypatch):
    from hidream_models import webhooks

    def broken(raw):
        raise KeyError("a bug")

    monkeypatch.setattr(webhooks, "check_callback_body", broken)
    client.raise_request_exception = False
    response = post(client, url(task), result(done("sub-a")))
    assert response.status_code == 500 and response._has_been_logged
    assert response.json() == {
        "ok": False,
        "error": "The callback could not be processed; please send it again later.",
    }


def test_a_database_failure_while_storing_an_invalid_body_is_503(client, task, monkeypatch):
    from django.db import OperationalError

    from hidream_models import webhooks

    def database_down(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(webhooks, "store_callback", database_down)
    client.raise_request_exception = False
    response = post(client, url(task), "{not json")
    assert response.status_code == 503, response.content[:300]
    assert "send it again" in response.json()["error"]


def test_a_body_cut_short_by_the_sender_is_400(client, task):
    class HungUp:
        def read(self, *args):
            raise OSError("connection reset by peer")

        readline = read

    client.raise_request_exception = False
    response = client.post(
        url(task),
        data=json.dumps(result(done("sub-a"))),
        content_type="application/json",
        **{"wsgi.input": HungUp()},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "The body could not be read."
    assert not CallbackEvent.objects.exists()
