"""HiDream misbehaving, over real HTTP to the simulator: what the app makes of each fault.

Submit faults (transient, permanent, unanswered), polling faults, callback faults, failed
sub-tasks and bad result files. Each test names the fault and the behaviour it expects.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
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
from hidream_models.services import submission
from tests import jobs
from tests.conftest import wait_for
from tests.reliability.conftest import assert_complete_pictures, stored_files

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEMPLATE = {"human_template_id": "h-001", "scene_template_id": "s-001"}
SUBMIT = "submit_model_image"
DOWNLOAD = "download_generated_image"


def _task(make_product, image_count: int = 1) -> ModelImageTask:
    options = services.GenerationOptions.validated(
        {"template": TEMPLATE, "image_count": image_count}
    )
    return services.create_tasks_for_products([make_product()], options).tasks[0]


def _fresh(task: ModelImageTask) -> ModelImageTask:
    task.refresh_from_db()
    return task


def _events(sim, name: str) -> list:
    return [event for event in sim.fault_events if event[0] == name]


def _wait_remote_finished(sim, task: ModelImageTask) -> None:
    """Until HiDream (the simulator) reports every sub-task of the task final."""

    def finished():
        result = sim.results(task.remote_task_id)["result"] or {}
        items = result.get("sub_task_results") or []
        return items and all(item["task_status"] not in (0, 2) for item in items)

    wait_for(finished, timeout=10, message="the simulator to finish the task")


def _submitted(sim, make_product, run_jobs, image_count: int = 1) -> ModelImageTask:
    task = _task(make_product, image_count)
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED, task.error_message
    _wait_remote_finished(sim, task)
    return task


def _task_files(media_root, task) -> list:
    return stored_files(media_root / "hidream" / str(task.pk))


# --- transient submit faults: retried with backoff, then accepted ---------------------------


@pytest.fixture
def backoffs(monkeypatch) -> list:
    """The (attempt, delay) of every backoff the submission service asks for."""
    calls = []
    real = submission.backoff_seconds

    def recording(attempt, retry_after=None):
        delay = real(attempt, retry_after)
        calls.append((attempt, delay))
        return delay

    monkeypatch.setattr(submission, "backoff_seconds", recording)
    return calls


def test_submit_503_html_twice_is_retried_with_backoff_then_submitted(
    simulator, make_product, run_jobs, backoffs
):
    simulator.fail_next(2, 503, body="html", kind="submit")
    task = _task(make_product)
    ran = run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED, task.error_message
    assert task.attempts == 3 and ran.count(SUBMIT) == 3
    assert len(_events(simulator, "fail_count")) == 2
    assert simulator.accepted_submits == 1 and len(simulator.submissions) == 1
    # One backoff per failed attempt, growing with the attempt number (jitter aside).
    assert [attempt for attempt, _delay in backoffs] == [1, 2]
    assert all(delay > 0 for _attempt, delay in backoffs)
    assert task.error_message == "" and task.remote_task_id and len(task.sub_task_ids) == 1


def test_submit_502_json_is_retried_then_submitted(simulator, make_product, run_jobs, backoffs):
    simulator.fail_next(1, 502, body="json", kind="submit")
    task = _task(make_product)
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED, task.error_message
    assert task.attempts == 2 and [attempt for attempt, _ in backoffs] == [1]
    assert simulator.accepted_submits == 1


def test_submit_connection_refused_before_sending_is_retried_then_submitted(
    simulator, settings, make_product, run_jobs
):
    """A connection that fails before the request leaves is safe to retry."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()  # nothing listens there: connection refused
    settings.HIDREAM_BASE_URL = dead
    task = _task(make_product)
    jobs.clear_jobs()
    assert services.submit_task(task.pk) == TaskStatus.QUEUED
    task = _fresh(task)
    assert "Attempt 1 failed, will retry" in task.error_message
    assert "Could not reach" in task.error_message
    assert task.next_attempt_at is not None
    settings.HIDREAM_BASE_URL = simulator.base_url  # HiDream is reachable again
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED and task.attempts == 2
    assert simulator.accepted_submits == 1


def test_submit_dropped_before_accept_is_unconfirmed_because_it_looks_like_a_lost_reply(
    simulator, make_product, run_jobs
):
    """The simulator reads the whole submit, then closes the socket without a reply.

    From the client's side that is exactly a reply lost after HiDream accepted (see
    ``drop_next(after_accept=True)`` below), so it cannot be retried blindly: ``unconfirmed``.
    """
    simulator.drop_next(1, kind="submit")
    task = _task(make_product)
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.UNCONFIRMED
    assert "broke before HiDream answered" in task.error_message
    services.sync_pass()
    run_jobs()
    assert _fresh(task).status == TaskStatus.UNCONFIRMED
    assert simulator.accepted_submits == 0 and simulator.submissions == []


def test_submit_dropped_before_accept_is_resent_and_submitted_with_resend_unconfirmed(
    simulator, settings, make_product, run_jobs
):
    settings.HIDREAM_RESEND_UNCONFIRMED = True
    simulator.drop_next(1, kind="submit")
    task = _task(make_product)
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED, task.error_message
    assert len(_events(simulator, "drop_before_accept")) == 1
    assert simulator.accepted_submits == 1


def test_submit_429_with_retry_after_is_honoured_and_uses_up_no_attempt(
    simulator, settings, make_product, run_jobs
):
    settings.HIDREAM_MAX_ATTEMPTS = 2
    simulator.fail_next(3, 429, body="json", kind="submit", retry_after=1)
    task = _task(make_product)
    started = time.monotonic()
    run_jobs()
    elapsed = time.monotonic() - started
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED, task.error_message
    assert task.attempts == 1  # three throttles, and not one attempt used up
    assert len(_events(simulator, "fail_count")) == 3
    assert simulator.accepted_submits == 1
    # Retry-After: 1 was waited for every time: twice in the client, once by the queue.
    assert elapsed >= 2.9


def test_submit_latency_below_the_read_timeout_is_only_slow(
    simulator, settings, make_product, run_jobs
):
    settings.HIDREAM_READ_TIMEOUT = 3.0
    simulator.set_faults(latency=1.0)
    task = _task(make_product)
    started = time.monotonic()
    run_jobs()
    task = _fresh(task)
    assert time.monotonic() - started >= 1.0
    assert task.status == TaskStatus.SUBMITTED and task.attempts == 1
    assert task.error_message == ""


# --- permanent submit faults: failed at once, in HiDream's words ---------------------------


def test_submit_business_error_fails_with_hidream_code_and_message(
    simulator, make_product, run_jobs
):
    simulator.business_error_next(1)  # 3005 余额不足 / insufficient balance
    task = _task(make_product)
    ran = run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.FAILED
    assert task.error_code == 3005
    assert "余额不足" in task.error_message and "insufficient balance" in task.error_message
    assert "code 3005" in task.error_message
    assert task.attempts == 1 and ran.count(SUBMIT) == 1
    assert simulator.accepted_submits == 0 and len(simulator.submissions) == 1
    assert task.finished_at is not None


@pytest.mark.parametrize("status", [400, 401])
def test_submit_http_4xx_fails_at_once_with_a_clear_message(
    status, simulator, settings, make_product, run_jobs
):
    if status == 400:
        simulator.fail_next(1, 400, body="json", kind="submit")
    else:
        settings.HIDREAM_API_TOKEN = "wrong-token-not-the-simulators"
    task = _task(make_product)
    ran = run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.FAILED
    assert f"HiDream answered HTTP {status}" in task.error_message
    if status == 401:
        assert "the API token was refused: check HIDREAM_API_TOKEN" in task.error_message
        assert "wrong-token-not-the-simulators" not in task.error_message
    else:
        assert "Bad Request" in task.error_message
    assert task.attempts == 1 and ran.count(SUBMIT) == 1
    assert simulator.accepted_submits == 0


def test_submit_5xx_until_max_attempts_fails_showing_the_last_error(
    simulator, settings, make_product, run_jobs
):
    settings.HIDREAM_MAX_ATTEMPTS = 3
    task = _task(make_product)
    jobs.clear_jobs()  # this test plays the worker, one attempt at a time
    for status, body in ((503, "html"), (500, "json"), (502, "json")):
        simulator.fail_next(1, status, body=body, kind="submit")
        services.submit_task(task.pk)
    task = _fresh(task)
    assert task.status == TaskStatus.FAILED
    assert task.attempts == 3
    assert "Gave up after 3 attempts" in task.error_message
    assert "Last error: HiDream answered HTTP 502" in task.error_message
    assert "Bad Gateway" in task.error_message
    # Only the last error is kept. (Match "HTTP 503", not "503": the reply's random
    # request_id may contain those digits.)
    assert "HTTP 503" not in task.error_message and "HTTP 500" not in task.error_message
    run_jobs()  # the retries still queued find the task final: nothing is sent
    assert simulator.accepted_submits == 0 and simulator.submissions == []
    assert _fresh(task).status == TaskStatus.FAILED


# --- unanswered submits: unconfirmed, listed, never resent silently ------------------------


def _read_timeout(sim, settings):
    settings.HIDREAM_READ_TIMEOUT = 0.5
    sim.set_faults(latency=1.5)


def _reply_lost_after_accept(sim, settings):
    sim.drop_next(1, after_accept=True)


def _garbage_reply(sim, settings):
    sim.garbage_next(1, kind="submit")


UNANSWERED = {
    # cause: (how, pictures HiDream accepted from the first send)
    "read_timeout": (_read_timeout, 1),
    "reply_lost_after_accept": (_reply_lost_after_accept, 1),
    "200_not_json": (_garbage_reply, 0),
}


@pytest.mark.parametrize("cause", list(UNANSWERED))
def test_unanswered_submit_is_unconfirmed_listed_in_admin_and_never_resent(
    cause, simulator, settings, make_product, run_jobs, admin_client
):
    make_fault, accepted = UNANSWERED[cause]
    make_fault(simulator, settings)
    task = _task(make_product)
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.UNCONFIRMED, task.error_message
    assert "not resent automatically" in task.error_message
    assert task.request_sent_at is not None and task.remote_task_id is None
    wait_for(lambda: simulator.accepted_submits == accepted, message="HiDream to accept")
    simulator.set_faults(latency=0)  # a resend would now go through: none may happen

    url = reverse("admin:hidream_models_modelimagetask_changelist")
    page = admin_client.get(url, {"status__exact": "unconfirmed"})
    assert page.status_code == 200
    html = page.content.decode()
    assert task.product_label in html and "Sent, not confirmed" in html
    assert list(page.context["cl"].result_list) == [task]

    sent = len(simulator.submissions)
    services.sync_pass()
    run_jobs()
    services.sync_pass(now=timezone.now() + timedelta(minutes=5))  # leases long expired
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.UNCONFIRMED
    assert task.attempts == 1
    assert simulator.accepted_submits == accepted
    assert len(simulator.submissions) == sent


RESENT = {
    # cause: pictures HiDream accepted in all (the lost send counts: it may be billed twice)
    "read_timeout": 2,
    "reply_lost_after_accept": 2,
    "200_not_json": 1,
}


@pytest.mark.parametrize("cause", list(RESENT))
def test_unanswered_submit_is_resent_when_resend_unconfirmed_is_on(
    cause, simulator, settings, make_product, run_jobs
):
    settings.HIDREAM_RESEND_UNCONFIRMED = True
    UNANSWERED[cause][0](simulator, settings)
    task = _task(make_product)
    jobs.clear_jobs()
    assert services.submit_task(task.pk) == TaskStatus.QUEUED  # no answer: queued again
    task = _fresh(task)
    assert "sent again because HIDREAM_RESEND_UNCONFIRMED is on" in task.error_message
    simulator.set_faults(latency=0)
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED, task.error_message
    assert task.attempts == 2
    wait_for(lambda: simulator.accepted_submits == RESENT[cause], message="both sends")
    assert simulator.results(task.remote_task_id)["code"] == 0


def test_resend_unconfirmed_stops_after_max_attempts_when_hidream_never_answers(
    simulator, settings, make_product, run_jobs
):
    """Each resend may be billed: HIDREAM_MAX_ATTEMPTS must bound them, as for other faults."""
    settings.HIDREAM_RESEND_UNCONFIRMED = True
    settings.HIDREAM_MAX_ATTEMPTS = 3
    settings.HIDREAM_READ_TIMEOUT = 0.2
    simulator.set_faults(latency=0.6)  # HiDream accepts every send, but always too late
    task = _task(make_product)
    run_jobs(limit=20)  # raises "more than 20 jobs" if the resends never stop
    task = _fresh(task)
    assert task.attempts <= 3
    assert task.status in (TaskStatus.UNCONFIRMED, TaskStatus.FAILED)


# --- polling faults: recorded, and the next poll succeeds -----------------------------------

POLL_FAULTS = {
    # fault: (inject it, words in the recorded error). The client itself retries a GET twice
    # on 5xx and dropped connections, so those faults are injected three times.
    "http_503": (lambda sim: sim.fail_next(3, 503, kind="results"), "HTTP 503"),
    "200_not_json": (lambda sim: sim.garbage_next(1, kind="results"), "not JSON"),
    "dropped": (lambda sim: sim.drop_next(3, kind="results"), "Could not reach"),
}


@pytest.mark.parametrize("fault", list(POLL_FAULTS))
def test_polling_fault_is_recorded_and_the_next_poll_succeeds(
    fault, simulator, settings, make_product, run_jobs
):
    settings.HIDREAM_CALLBACK_BASE_URL = ""  # polling only
    settings.HIDREAM_POLL_INTERVAL = 1
    inject, words = POLL_FAULTS[fault]
    task = _submitted(simulator, make_product, run_jobs, image_count=2)
    inject(simulator)

    report = services.sync_pass()
    assert (report.polled, report.errors, report.changed) == (1, 1, 0)
    task = _fresh(task)
    assert task.status == TaskStatus.SUBMITTED
    assert task.error_message.startswith("Polling failed, will try again")
    assert words in task.error_message
    assert task.last_polled_at is not None
    assert not task.images.exclude(status=ImageStatus.PENDING).exists()

    report = services.sync_pass(now=timezone.now() + timedelta(seconds=2))  # next poll due
    assert (report.polled, report.errors, report.changed) == (1, 0, 1)
    assert run_jobs().count(DOWNLOAD) == 2
    task = _fresh(task)
    assert task.status == TaskStatus.SUCCEEDED and task.error_message == ""
    assert task.images.filter(status=ImageStatus.STORED).count() == 2


def test_lost_callback_is_completed_by_polling(
    simulator, settings, make_product, run_jobs, callback_guard
):
    settings.HIDREAM_CALLBACK_GRACE = 30
    simulator.set_faults(callback_mode="lost")
    task = _submitted(simulator, make_product, run_jobs, image_count=2)
    assert simulator.submissions[-1]["notify_url"].startswith(settings.HIDREAM_CALLBACK_BASE_URL)
    wait_for(lambda: _events(simulator, "callback: lost"), message="the lost callback")

    assert services.sync_pass().polled == 0  # the callback still has its grace period
    report = services.sync_pass(now=timezone.now() + timedelta(seconds=31))  # grace is over
    assert report.polled == 1 and report.changed == 1
    run_jobs()
    task = _fresh(task)
    assert task.status == TaskStatus.SUCCEEDED
    assert task.last_callback_at is None and task.last_polled_at is not None
    assert simulator.callback_attempts == []
    assert not CallbackEvent.objects.filter(task=task).exists()


# --- callback faults: exactly one picture per sub-task, stored once ------------------------

CALLBACK_FAULTS = {
    # mode: deliveries answered 200
    "duplicate": 3,
    "out_of_order": 2,
    "early": 1,
    "concurrent_duplicates": 3,
}


@pytest.mark.parametrize("mode", list(CALLBACK_FAULTS))
def test_callback_fault_gives_one_picture_per_sub_task_stored_once(
    mode, simulator, make_product, run_jobs, media_root, callback_guard
):
    simulator.callback_retry_interval = 0.2
    simulator.set_faults(callback_mode=mode, callback_repeat=3)
    task = _task(make_product, image_count=2)
    ran = run_jobs()  # submit (with "early", the callback has come before this returns)
    delivered = CALLBACK_FAULTS[mode]

    def all_delivered():
        return sum(outcome == 200 for _url, outcome in simulator.callback_attempts) >= delivered

    wait_for(all_delivered, timeout=15, message=f"{delivered} callback deliveries")
    time.sleep(0.3)  # nothing more may come: no failed attempt is left to retry
    with callback_guard:
        assert sum(o == 200 for _u, o in simulator.callback_attempts) == delivered
        assert all(o == 200 for _u, o in simulator.callback_attempts), simulator.callback_attempts
        ran += run_jobs()
        assert ran.count(DOWNLOAD) == 2  # one download per picture, whatever came twice

        task = _fresh(task)
        assert task.status == TaskStatus.SUCCEEDED, task.error_message
        assert len(task.sub_task_ids) == 2
        images = list(GeneratedImage.objects.filter(task=task).order_by("position"))
        assert [image.sub_task_id for image in images] == task.sub_task_ids
        for image in images:
            assert image.status == ImageStatus.STORED, image.failure_reason
            assert (image.remote_status, image.progress) == (1, 1.0)  # nothing moved back
        files = _task_files(media_root, task)
        assert [path.name for path in files] == sorted(
            image.file.name.rsplit("/", 1)[-1] for image in images
        )
        assert_complete_pictures(media_root / "hidream")
        events = CallbackEvent.objects.filter(task=task)
        assert events.count() == delivered
        assert events.filter(outcome=CallbackOutcome.APPLIED).count() == 1
        assert events.filter(outcome=CallbackOutcome.UNCHANGED).count() == delivered - 1
        assert task.last_callback_at is not None
        if mode == "early":  # it did beat the submit's reply
            assert events.get().received_at <= task.submitted_at


# --- failed sub-tasks: clear reasons, partial or failed task -------------------------------

SUB_TASK_FAILURES = {
    # forced statuses: (task status, words in the failed pictures' reasons)
    "moderation": ([4, 1], TaskStatus.PARTIAL, ["content moderation", "(status 4)"]),
    "no_result_1004": ([1004, 1], TaskStatus.PARTIAL, ["no result", "(status 1004)"]),
    "no_result_1005": ([1, 1005], TaskStatus.PARTIAL, ["no result", "(status 1005)"]),
    "no_result_1006": ([1006, 1], TaskStatus.PARTIAL, ["no result", "(status 1006)"]),
    "all_failed": ([4, 1006], TaskStatus.FAILED, ["HiDream says"]),
}


@pytest.mark.parametrize("case", list(SUB_TASK_FAILURES))
def test_failed_sub_tasks_fail_their_pictures_with_clear_reasons(
    case, simulator, settings, make_product, run_jobs, media_root
):
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    forced, final_status, words = SUB_TASK_FAILURES[case]
    simulator.forced_statuses = forced
    task = _submitted(simulator, make_product, run_jobs, image_count=2)
    services.sync_task(task.pk)
    run_jobs()
    task = _fresh(task)
    assert task.status == final_status, task.error_message
    images = list(task.images.order_by("position"))
    assert len(images) == 2
    for image, status in zip(images, forced, strict=True):
        if status == 1:
            assert image.status == ImageStatus.STORED
        else:
            assert image.status == ImageStatus.FAILED
            assert image.remote_status == status
            for word in words:
                assert word in image.failure_reason
            assert not image.file
    stored = [image for image in images if image.status == ImageStatus.STORED]
    assert len(_task_files(media_root, task)) == len(stored)
    if final_status == TaskStatus.FAILED:
        assert task.error_message.startswith("No picture could be made")
        assert "moderation" in task.error_message and "no result" in task.error_message
    else:
        assert task.error_message == "1 of 2 pictures failed."


# --- bad result files: that picture failed, the other stored --------------------------------

RESULT_FAULTS = {
    # name: (faults, settings, words in the reason)
    "expired_404": ({"result_fault": "expired"}, {}, ["HTTP 404", "may have expired"]),
    "html_page": ({"result_fault": "html"}, {}, ["text/html instead of an image"]),
    "oversize": (
        {"result_fault": "oversize", "oversize_bytes": 2**20},
        {"HIDREAM_MAX_DOWNLOAD_BYTES": 200 * 1024},
        ["1048576 bytes, more than HIDREAM_MAX_DOWNLOAD_BYTES (204800)"],
    ),
    "oversize_without_length": (
        {"result_fault": "oversize", "oversize_bytes": 2**20, "result_content_length": False},
        {"HIDREAM_MAX_DOWNLOAD_BYTES": 200 * 1024},
        ["sent more than HIDREAM_MAX_DOWNLOAD_BYTES (204800) bytes; stopped"],
    ),
    "decompression_bomb": ({"result_fault": "bomb"}, {}, ["900000000 pixels"]),
    "redirect_private": (
        {"result_fault": "redirect_private"},
        {},
        ["Refused to download http://10.0.0.1", "10.0.0.1 is not one of the allowed result hosts"],
    ),
    "redirect_private_to_an_allowed_host": (
        {"result_fault": "redirect_private"},
        {"HIDREAM_ALLOWED_RESULT_HOSTS": ["hidreamai.com", ".hidreamai.com", "10.0.0.1"]},
        ["Refused to download http://10.0.0.1", "10.0.0.1 resolves to a non-public address"],
    ),
}


@pytest.mark.parametrize("fault", list(RESULT_FAULTS))
def test_bad_result_file_fails_that_picture_and_stores_the_other(
    fault, simulator, settings, make_product, run_jobs, media_root, loopback_only
):
    faults, extra_settings, words = RESULT_FAULTS[fault]
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    for name, value in extra_settings.items():
        setattr(settings, name, value)
    simulator.set_faults(result_fault_count=1, **faults)  # the first sub-task only
    task = _submitted(simulator, make_product, run_jobs, image_count=2)
    services.sync_task(task.pk)
    ran = run_jobs()
    assert ran.count(DOWNLOAD) == 2  # refused at once: nothing here is worth retrying
    task = _fresh(task)
    assert task.status == TaskStatus.PARTIAL, task.error_message
    bad, good = task.images.order_by("position")
    assert bad.status == ImageStatus.FAILED
    for word in words:
        assert word in bad.failure_reason
    assert not bad.file and bad.bytes is None
    assert good.status == ImageStatus.STORED, good.failure_reason
    files = _task_files(media_root, task)
    assert [path.name for path in files] == [good.file.name.rsplit("/", 1)[-1]]
    assert bad.sub_task_id not in " ".join(path.name for path in files)
    assert_complete_pictures(media_root / "hidream")
    assert len(_events(simulator, f"result_fault: {faults['result_fault']}")) == 1
    # The redirect to 10.0.0.1 was refused by the app's guard, before any connection.
    assert loopback_only.addresses == []
