"""Submitting under transient faults: retried with backoff; unanswered sends never resent."""

from __future__ import annotations

import socket

import pytest

from hidream_models import services
from hidream_models.models import ModelImageTask, TaskStatus
from tests.stub_server import SUBMIT_OK, StubServer

pytestmark = pytest.mark.django_db(transaction=True)

PROMPT = {"prompt": "studio portrait", "image_count": 1}
JSON = {"Content-Type": "application/json"}


def _queued_task(make_product):
    options = services.GenerationOptions.validated(PROMPT)
    return services.create_tasks_for_products([make_product()], options).tasks[0]


def _dead_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens here now: connections are refused
    return port


def test_503_then_success_is_retried_by_the_job(settings, make_product, run_jobs):
    replies = [(503, JSON, {"error": "busy"}, 0), (503, JSON, {"error": "busy"}, 0), SUBMIT_OK]
    with StubServer(replies) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        ran = run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUBMITTED, task.error_message
    assert task.attempts == 3
    assert ran.count("submit_model_image") == 3
    # A POST answered 503 is not repeated inside one attempt: one request per attempt.
    assert [method for method, *_ in stub.requests] == ["POST"] * 3


def test_429_is_sent_again_by_the_job_honouring_retry_after(settings, make_product, run_jobs):
    replies = [(429, {**JSON, "Retry-After": "0"}, {"error": "slow down"}, 0), SUBMIT_OK]
    with StubServer(replies) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.SUBMITTED
    assert task.attempts == 1 and len(stub.requests) == 2


def test_refused_connections_give_up_after_max_attempts(settings, make_product, run_jobs):
    settings.HIDREAM_BASE_URL = f"http://127.0.0.1:{_dead_port()}"
    settings.HIDREAM_MAX_ATTEMPTS = 3
    task = _queued_task(make_product)
    run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.attempts == 3
    assert "Gave up after 3 attempts" in task.error_message
    assert "Could not reach" in task.error_message


def test_read_timeout_marks_unconfirmed_and_never_resends(settings, make_product, run_jobs):
    settings.HIDREAM_READ_TIMEOUT = 0.3
    slow = (200, JSON, {"code": 0, "result": {"task_id": "late", "sub_task_ids": []}}, 1.0)
    with StubServer([slow]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        run_jobs()
        services.sync_pass()  # the sweep must not resend it either
        run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.UNCONFIRMED
    assert "not resent automatically" in task.error_message
    assert len(stub.requests) == 1


def test_retry_of_unconfirmed_needs_explicit_confirmation(settings, make_product):
    task = _queued_task(make_product)
    ModelImageTask.objects.filter(pk=task.pk).update(status=TaskStatus.UNCONFIRMED)
    task.refresh_from_db()
    with pytest.raises(services.HiDreamActionRefused, match="Confirm explicitly"):
        services.retry_task(task)
    clone = services.retry_task(task, resend_unconfirmed=True)
    assert clone.pk != task.pk and clone.retry_of == task and clone.status == TaskStatus.QUEUED
    assert clone.source_image.name == task.source_image.name


def test_api_error_fails_with_code_and_message(settings, make_product, run_jobs):
    refusal = (
        200,
        JSON,
        {
            "code": 4031,
            "message": "余额不足 insufficient credits",
            "request_id": "r-9",
            "result": None,
        },
        0,
    )
    with StubServer([refusal]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.error_code == 4031
    assert "insufficient credits" in task.error_message and "r-9" in task.error_message
    assert len(stub.requests) == 1


def test_two_workers_racing_make_one_submit(settings, make_product):
    with StubServer([SUBMIT_OK]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        first = services.submit_task(task.pk)
        second = services.submit_task(task.pk)
    assert first == TaskStatus.SUBMITTED and second is None
    assert len(stub.requests) == 1


def test_missing_token_fails_the_task_with_a_clear_message(settings, make_product, run_jobs):
    settings.HIDREAM_API_TOKEN = ""
    with StubServer([SUBMIT_OK]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert "HIDREAM_API_TOKEN is not set" in task.error_message
    assert stub.requests == []


# -- answers that may have been acted upon: unconfirmed, never sent again (#14 review) --------


def test_an_answer_cut_off_mid_body_is_unconfirmed_never_sent_again(
    settings, make_product, run_jobs
):
    from tests.stub_server import TRUNCATE

    cut = (200, {**JSON, TRUNCATE: "10"}, SUBMIT_OK[2], 0)
    with StubServer([cut, SUBMIT_OK]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.UNCONFIRMED, task.error_message
    assert len(stub.requests) == 1  # HiDream had it: one request, one bill


def test_a_gateway_timeout_on_submit_is_unconfirmed_never_sent_again(
    settings, make_product, run_jobs
):
    with StubServer([(504, JSON, {"error": "upstream timed out"}, 0), SUBMIT_OK]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.UNCONFIRMED and len(stub.requests) == 1


def test_a_long_retry_after_on_submit_goes_back_to_the_job_not_waited_in_the_call(
    settings, make_product
):
    """A POST is never repeated inside one call: a 429 defers the task, whose next claim
    sends it (fenced), rather than a call the sweep may have given up on meanwhile."""
    replies = [(429, {**JSON, "Retry-After": "3600"}, {"error": "slow down"}, 0), SUBMIT_OK]
    with StubServer(replies) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        task = _queued_task(make_product)
        assert services.submit_task(task.pk) == TaskStatus.QUEUED
    assert len(stub.requests) == 1
    task.refresh_from_db()
    assert task.attempts == 0 and "throttling" in task.error_message


def test_an_error_echoing_the_notify_url_keeps_the_callback_token_out_of_the_task(
    settings, make_product, run_jobs
):
    settings.HIDREAM_CALLBACK_BASE_URL = "https://shop.example.com"
    task = _queued_task(make_product)
    url = services.callback_url(task)
    echo = (400, JSON, {"error": f"notify_url {url} is not reachable"}, 0)
    with StubServer([echo]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        run_jobs()
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.callback_token not in task.error_message
    assert f"/callback/{task.pk}/***" in task.error_message
