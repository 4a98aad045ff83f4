"""A callback whose applying failed for a temporary reason is applied later, not lost (#14.8).

The body's fault (unreadable, not a task result, another HiDream task's) makes it ``invalid``
for good. Anything else (a database error, a lock timeout, storage, a bug) leaves it
``received`` with the attempt counted and its traceback kept; the sweep tries it again with
backoff once its turn comes, and gives up (``error``) after ``HIDREAM_MAX_ATTEMPTS``
attempts. Staff can apply it again from the admin. Faults are injected where they happen:
in the database driver's path (``connection.execute_wrapper``), in a file the shop's own
signal receiver writes, and in the code that applies the result. The real lock timeout and
the lost connection are in ``reliability/test_callback_retry.py``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, connection
from django.db.models.signals import pre_save
from django.urls import reverse
from django.utils import timezone

from hidream_models.models import (
    CallbackEvent,
    CallbackOutcome,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from hidream_models.services import callbacks
from tests.test_admin import make_staff, messages_of, post_action

pytestmark = pytest.mark.django_db

CALLBACKS_URL = "admin:hidream_models_callbackevent_changelist"
PICTURES = 'INSERT INTO "hidream_models_generatedimage"'


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


def body(task_id="remote-1", **extra) -> str:
    subs = [
        {"sub_task_id": sub, "task_status": 1, "image": "http://127.0.0.1:9/x.jpg"}
        for sub in ("sub-a", "sub-b")
    ]
    return json.dumps({"task_id": task_id, "sub_task_results": subs, **extra})


def store(task, raw: str | None = None) -> CallbackEvent:
    """A callback as the view stores it (its own tests cover the view)."""
    return callbacks.store_callback(task.pk, outcome=CallbackOutcome.RECEIVED, body=raw or body())


def after(event, seconds: float):
    """``seconds`` after the sweep first takes ``event`` (``UNAPPLIED_AFTER`` after it came)."""
    return event.received_at + callbacks.UNAPPLIED_AFTER + timedelta(seconds=seconds)


@contextmanager
def failing(sql: str, error: Exception):
    """Every query starting with ``sql`` fails with ``error`` in the database driver's path,
    while the block lasts; yields the list of the failures."""
    failures = []

    def wrapper(execute, query, params, many, context):
        if query.startswith(sql):
            failures.append(query)
            raise error
        return execute(query, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield failures


def downloading(task) -> int:
    return GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING).count()


# -- the body's fault: invalid, for good ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("{not json", "not valid JSON"),
        ("[NaN]", "NaN is not a JSON number"),
        ("[" + "9" * 5000 + "]", "more digits than can be read"),
        ('{"sub_task_results": [{"sub_task_id": "sub-a"}]}', "task_status"),
        (body(task_id="someone-else"), "someone-else"),  # only applying it can tell
    ],
    ids=["not-json", "nan", "too-many-digits", "wrong-field", "another-task"],
)
def test_a_body_at_fault_is_invalid_at_once_with_no_retry(task, raw, reason):
    event = store(task, raw)
    assert callbacks.apply_received_callbacks() == 1
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.INVALID and reason in event.error, event.error
    assert event.attempts == 1 and event.traceback == ""
    # Final: the sweep never takes it again.
    assert callbacks.apply_unapplied_callbacks(after(event, 3600)) == 0
    assert CallbackEvent.objects.get().attempts == 1


def test_a_value_error_from_the_code_that_applies_it_is_no_invalid_body(task, monkeypatch):
    event = store(task)
    real_apply = callbacks.apply_result

    def buggy_apply_result(task_id, payload, **kwargs):
        raise ValueError("a bug in the shop's code, not in HiDream's body")

    monkeypatch.setattr(callbacks, "apply_result", buggy_apply_result)
    assert callbacks.apply_received_callbacks() == 0
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.RECEIVED, event.error
    assert event.attempts == 1 and "Attempt 1 failed" in event.error
    assert "ValueError: a bug in the shop's code" in event.traceback
    assert "buggy_apply_result" in event.traceback  # where it came from, for developers

    monkeypatch.setattr(callbacks, "apply_result", real_apply)  # the fix is deployed
    assert callbacks.apply_unapplied_callbacks(after(event, 1)) == 1
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.APPLIED and event.error == ""
    assert event.attempts == 2 and "ValueError" in event.traceback  # the last failure's
    assert downloading(task) == 2


# -- a temporary fault: received, counted, retried by the sweep with backoff --------------------


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("deadlock detected"),
        DatabaseError("could not serialize access"),
        IntegrityError("duplicate key value violates unique constraint"),
    ],
    ids=["OperationalError", "DatabaseError", "IntegrityError"],
)
def test_a_database_error_while_applying_leaves_it_received_then_the_sweep_applies_it(
    task, settings, error
):
    settings.HIDREAM_RETRY_BACKOFF, settings.HIDREAM_RETRY_BACKOFF_MAX = 30, 300
    event = store(task)
    with failing(PICTURES, error) as failures:
        assert callbacks.apply_received_callbacks() == 0
    assert failures  # the fault was hit, inside the savepoint
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.RECEIVED
    assert event.attempts == 1 and type(error).__name__ in event.error
    assert f"{type(error).__name__}: {error}" in event.traceback
    assert downloading(task) == 0 and not task.images.exists()  # rolled back whole

    # Backoff: not the next job's, and not the sweep's before its turn.
    assert callbacks.apply_received_callbacks() == 0
    assert callbacks.apply_unapplied_callbacks(after(event, 29)) == 0
    assert CallbackEvent.objects.get().attempts == 1
    assert callbacks.next_attempt_at(event.received_at, 1) == after(event, 30)

    assert callbacks.apply_unapplied_callbacks(after(event, 30.5)) == 1  # the fault is gone
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.APPLIED and event.attempts == 2
    assert downloading(task) == 2


def test_a_storage_error_while_applying_leaves_it_received_then_the_sweep_applies_it(
    task, tmp_path
):
    # The shop's receiver notes each picture in a file; its folder is missing (a path
    # through a file), so the write fails with a real OSError, as a full disk would.
    blocked = tmp_path / "audit"
    blocked.write_text("not a folder")

    def note_picture(sender, instance, **kwargs):
        with open(blocked / "pictures.log", "a") as log:
            log.write(f"{instance.sub_task_id}\n")

    pre_save.connect(note_picture, sender=GeneratedImage, dispatch_uid="test-audit")
    try:
        event = store(task)
        assert callbacks.apply_received_callbacks() == 0
        event.refresh_from_db()
        assert event.outcome == CallbackOutcome.RECEIVED and event.attempts == 1
        assert "NotADirectoryError" in event.error and "note_picture" in event.traceback

        blocked.unlink()
        blocked.mkdir()  # mended
        from hidream_models.services.polling import recover_interrupted_work

        assert recover_interrupted_work(now=after(event, 1)) == 1  # hidream_sync's sweep
    finally:
        pre_save.disconnect(dispatch_uid="test-audit", sender=GeneratedImage)
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.APPLIED and event.attempts == 2
    assert (blocked / "pictures.log").read_text().split() == ["sub-a", "sub-b"]


def test_after_max_attempts_it_is_an_error_with_the_reason_and_the_sweep_stops(
    task, settings, caplog
):
    settings.HIDREAM_MAX_ATTEMPTS = 3
    settings.HIDREAM_RETRY_BACKOFF = 10
    settings.HIDREAM_RETRY_BACKOFF_MAX = 15
    settings.HIDREAM_TASK_DEADLINE = 1  # and older than this: it came a minute ago
    event = store(task)
    CallbackEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - timedelta(minutes=1)
    )
    event.refresh_from_db()
    with failing(PICTURES, OperationalError("could not obtain lock")) as failures:
        callbacks.apply_received_callbacks()
        # Each attempt waits longer: 10 s, then 15 (the cap), counted from its arrival.
        for seconds, attempts in [(9, 1), (10, 2), (24, 2), (25, 3), (3600, 3)]:
            callbacks.apply_unapplied_callbacks(after(event, seconds))
            assert CallbackEvent.objects.get().attempts == attempts, seconds
    assert len(failures) == 3
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.ERROR
    assert event.error.startswith("Given up after 3 attempts: OperationalError")
    assert "could not obtain lock" in event.traceback
    assert "given up" in caplog.text and task.callback_token not in caplog.text
    assert task.callback_token not in event.traceback + event.error


def test_a_storage_outage_longer_than_the_attempts_does_not_end_the_callback(task, settings):
    """Five quick failures (a minute of trouble) leave it waiting: HiDream does not send a
    result again, so it is given up only once older than HIDREAM_TASK_DEADLINE too."""
    settings.HIDREAM_MAX_ATTEMPTS = 2
    settings.HIDREAM_TASK_DEADLINE = 3600
    event = store(task)
    with failing(PICTURES, OperationalError("could not obtain lock")):
        callbacks.apply_received_callbacks()
        for seconds in (60, 600, 1200):
            callbacks.apply_unapplied_callbacks(after(event, seconds))
    event.refresh_from_db()
    assert event.attempts == 4 and event.outcome == CallbackOutcome.RECEIVED
    assert event.error.startswith("Attempt 4 failed; it will be tried again")
    assert callbacks.apply_unapplied_callbacks(after(event, 3600)) == 1  # the fault is gone
    assert CallbackEvent.objects.get().outcome == CallbackOutcome.APPLIED


def test_what_is_kept_of_a_failure_is_storable_and_bounded(task, monkeypatch):
    event = store(task)

    def apply_result(task_id, payload, **kwargs):
        raise RuntimeError("quoting the body: \x00 \ud800 " + "x" * 50_000)

    monkeypatch.setattr(callbacks, "apply_result", apply_result)
    callbacks.apply_received_callbacks()
    event.refresh_from_db()  # written, though PostgreSQL takes no NUL in text
    assert event.outcome == CallbackOutcome.RECEIVED and event.attempts == 1
    assert "\x00" not in event.traceback and "\ud800" not in event.error
    assert len(event.traceback) <= callbacks.TRACEBACK_CHARS
    assert len(event.error) < callbacks.ERROR_CHARS + 100


def test_an_event_tried_since_the_caller_read_it_is_left_to_its_next_turn(task, monkeypatch):
    event = store(task)
    with failing(PICTURES, OperationalError("deadlock detected")):
        assert callbacks.apply_callback_event(event.pk, attempts=0) == CallbackOutcome.RECEIVED
    # A sweep that read it before that attempt does not try it again at once.
    assert callbacks.apply_callback_event(event.pk, attempts=0) is None
    assert CallbackEvent.objects.get().attempts == 1
    assert callbacks.apply_callback_event(event.pk, attempts=1) == CallbackOutcome.APPLIED


# -- staff: "Apply again" ------------------------------------------------------------------------


def failed_events(task, settings) -> dict[str, CallbackEvent]:
    """One event in each state staff may apply again, and an applied one."""
    settings.HIDREAM_MAX_ATTEMPTS = 1
    settings.HIDREAM_TASK_DEADLINE = 1
    given_up = store(task)
    CallbackEvent.objects.filter(pk=given_up.pk).update(
        received_at=timezone.now() - timedelta(minutes=1)
    )
    with failing(PICTURES, OperationalError("server closed the connection")):
        callbacks.apply_received_callbacks()
    invalid = store(task, body(task_id="someone-else"))
    callbacks.apply_received_callbacks()
    waiting = store(task)
    CallbackEvent.objects.filter(pk=waiting.pk).update(attempts=1)  # failed once, backing off
    events = {"error": given_up, "invalid": invalid, "received": waiting}
    for event in events.values():
        event.refresh_from_db()
    assert {name: event.outcome for name, event in events.items()} == {
        "error": "error",
        "invalid": "invalid",
        "received": "received",
    }
    return events


def test_apply_again_applies_error_and_received_events_and_reports_each(
    admin_client, task, settings
):
    events = failed_events(task, settings)
    chosen = [event.pk for event in events.values()]
    response = post_action(admin_client, CALLBACKS_URL, "apply_again", chosen)
    assert response.status_code == 302
    outcomes = dict(CallbackEvent.objects.filter(pk__in=chosen).values_list("pk", "outcome"))
    assert outcomes == {
        events["error"].pk: "applied",  # the fault is gone: HiDream's result is in
        events["invalid"].pk: "invalid",  # still another task's: applying cannot mend it
        events["received"].pk: "unchanged",  # applied without waiting for its turn
    }
    assert downloading(task) == 2
    said = [text for _, text in messages_of(response)]
    assert "1 callback applied." in said
    assert "1 callback applied; its task had that result already." in said
    assert any(
        f"Callback {events['invalid'].pk} (task {task.pk}) is invalid" in text
        and "someone-else" in text
        for text in said
    ), said

    # Applied ones are left alone, and said so.
    response = post_action(admin_client, CALLBACKS_URL, "apply_again", chosen[:1] + chosen[2:])
    assert "2 callbacks skipped: they are applied already." in [
        text for _, text in messages_of(response)
    ]
    assert CallbackEvent.objects.get(pk=events["error"].pk).attempts == 2


def test_apply_again_says_when_it_failed_again(admin_client, task, settings):
    events = failed_events(task, settings)
    with failing(PICTURES, OperationalError("still down")):
        response = post_action(admin_client, CALLBACKS_URL, "apply_again", [events["error"].pk])
    assert response.status_code == 302
    event = CallbackEvent.objects.get(pk=events["error"].pk)
    assert event.outcome == "error" and event.attempts == 2
    ((level, text),) = messages_of(response)
    assert text.startswith(f"Callback {event.pk} (task {task.pk}) failed: Given up after 2")
    assert "still down" in text


def test_apply_again_takes_the_task_change_permission_and_so_does_the_traceback(
    client, task, settings
):
    events = failed_events(task, settings)
    event = events["error"]
    page = reverse("admin:hidream_models_callbackevent_change", args=[event.pk])
    viewer = make_staff("log-reader", ["hidream_models.view_callbackevent"])
    client.force_login(viewer)
    listing = client.get(reverse(CALLBACKS_URL))
    assert listing.status_code == 200 and "apply_again" not in listing.content.decode()
    shown = client.get(page).content.decode()
    assert "server closed the connection" in shown  # the reason, for everyone who may look
    assert "Traceback (most recent call last)" not in shown  # the traceback, only for some
    response = post_action(client, CALLBACKS_URL, "apply_again", [event.pk])
    assert CallbackEvent.objects.get(pk=event.pk).outcome == "error"  # refused
    assert response.status_code in (200, 302)

    operator = make_staff(
        "operator",
        ["hidream_models.view_callbackevent", "hidream_models.change_modelimagetask"],
    )
    client.force_login(operator)
    assert "apply_again" in client.get(reverse(CALLBACKS_URL)).content.decode()
    shown = client.get(page).content.decode()
    assert "Traceback (most recent call last)" in shown
    assert task.callback_token not in shown
    post_action(client, CALLBACKS_URL, "apply_again", [event.pk])
    assert CallbackEvent.objects.get(pk=event.pk).outcome == "applied"


def test_apply_again_when_not_even_the_failure_can_be_written_is_a_message_not_a_500(
    admin_client, task, settings
):
    events = failed_events(task, settings)
    event = events["received"]
    # The attempt fails, and so does writing it down: the event stays as it was.
    lost = OperationalError("connection lost")
    with failing(PICTURES, lost), failing('UPDATE "hidream_models_callbackevent"', lost):
        response = post_action(admin_client, CALLBACKS_URL, "apply_again", [event.pk])
    assert response.status_code == 302
    ((level, text),) = messages_of(response)
    assert "could not be applied, and stays as it was" in text and "connection lost" in text
    event.refresh_from_db()
    assert event.outcome == "received" and event.attempts == 1
