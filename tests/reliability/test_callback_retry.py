"""Callbacks whose applying met a real database fault are applied later, not lost (#14.8).

Two faults the injected ones of ``test_callback_reapply.py`` only imitate, on the shared
database (a SQLite file, or PostgreSQL): a lock held by another transaction past the lock
timeout, and the connection lost in the middle of applying. Neither is the body's fault, so
the callback stays ``received``; once the fault is gone the sweep applies it. Nothing raises
to the caller: a sweep goes on, and the admin's "Apply again" answers with a message.
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse

from hidream_models.models import (
    CallbackEvent,
    CallbackOutcome,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from hidream_models.services import callbacks
from tests.reliability.conftest import run_threads

PICTURES = 'INSERT INTO "hidream_models_generatedimage"'


def make_task() -> ModelImageTask:
    return ModelImageTask.objects.create(
        mode="prompt",
        prompt="summer look",
        image_count=2,
        status=TaskStatus.SUBMITTED,
        remote_task_id="remote-1",
        sub_task_ids=["sub-a", "sub-b"],
    )


def store(task) -> CallbackEvent:
    subs = [
        {"sub_task_id": sub, "task_status": 1, "image": "http://127.0.0.1:9/x.jpg"}
        for sub in ("sub-a", "sub-b")
    ]
    raw = json.dumps({"task_id": "remote-1", "sub_task_results": subs})
    return callbacks.store_callback(task.pk, outcome=CallbackOutcome.RECEIVED, body=raw)


def sweep_after(event, seconds: float = 1.0) -> int:
    return callbacks.apply_unapplied_callbacks(
        event.received_at + callbacks.UNAPPLIED_AFTER + timedelta(seconds=seconds)
    )


def applied(task, event) -> bool:
    event.refresh_from_db()
    downloading = GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING)
    return event.outcome == CallbackOutcome.APPLIED and downloading.count() == 2


@contextmanager
def lock_held_elsewhere(shared_db, task):
    """Another transaction, on another connection, holds ``task``'s row locked (SQLite: the
    whole database, its one writer) until the block ends."""
    locked, release = threading.Event(), threading.Event()

    def hold():
        shared_db.bind()
        try:
            with transaction.atomic():
                ModelImageTask.objects.select_for_update().filter(pk=task.pk).update(prompt="x")
                locked.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(timeout=10)
        yield
    finally:
        release.set()
        holder.join(timeout=30)
    assert not holder.is_alive()


@contextmanager
def short_lock_timeout():
    """Waiting for a lock gives up after 300 ms, on this connection (the server's timeout;
    SQLite's busy timeout)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET lock_timeout = '300ms'")
        else:
            cursor.execute("PRAGMA busy_timeout = 300")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("RESET lock_timeout")
            else:
                cursor.execute("PRAGMA busy_timeout = 20000")


def test_a_lock_timeout_leaves_the_callback_received_and_the_sweep_applies_it(shared_db, caplog):
    task = make_task()
    event = store(task)
    with lock_held_elsewhere(shared_db, task), short_lock_timeout():
        assert callbacks.apply_received_callbacks() == 0  # no exception reaches the job
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.RECEIVED
    if shared_db.vendor == "postgresql":
        # The task's row lock timed out inside the savepoint: the attempt is written down.
        assert event.attempts == 1 and "lock timeout" in event.traceback
    else:
        # SQLite locks the whole file: not even the record could be written.
        assert event.attempts == 0 and "database is locked" in caplog.text

    assert sweep_after(event) == 1  # the lock is gone
    assert applied(task, event)
    assert task.callback_token not in caplog.text + event.traceback


def lose_the_connection() -> None:
    """The database connection of this thread dies as a query is sent (the server ended
    it, a network cut): for real, not a raised exception."""
    if connection.vendor == "postgresql":
        pid = connection.connection.info.backend_pid

        def kill():
            try:
                with connections["default"].cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
            finally:
                connections.close_all()

        run_threads([kill])
    else:
        connection.connection.close()  # the next statement finds it closed


@contextmanager
def connection_lost_while_applying():
    """The connection dies as the first picture is inserted, once."""
    lost = []

    def wrapper(execute, sql, params, many, context):
        if sql.startswith(PICTURES) and not lost:
            lost.append(sql)
            lose_the_connection()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield lost
    assert lost


def test_a_connection_lost_while_applying_leaves_the_callback_received_for_the_sweep(
    shared_db, caplog
):
    task = make_task()
    event = store(task)
    with connection_lost_while_applying():
        # Nothing can be written on a dead connection: no attempt recorded, no exception.
        assert callbacks.apply_received_callbacks() == 0
    assert f"Applying HiDream callback {event.pk} failed; the sweep retries" in caplog.text
    event.refresh_from_db()  # a new connection
    assert event.outcome == CallbackOutcome.RECEIVED and event.attempts == 0
    assert not GeneratedImage.objects.filter(task=task).exists()

    assert sweep_after(event) == 1
    assert applied(task, event)


def test_apply_again_on_a_lost_connection_is_a_message_not_a_500(shared_db):
    task = make_task()
    event = store(task)
    CallbackEvent.objects.filter(pk=event.pk).update(outcome=CallbackOutcome.ERROR, attempts=5)
    client = Client()
    client.raise_request_exception = False
    client.force_login(get_user_model().objects.create_superuser("root", password="pw"))
    changelist = reverse("admin:hidream_models_callbackevent_changelist")
    form = {"action": "apply_again", "index": "0", "_selected_action": [str(event.pk)]}
    with connection_lost_while_applying():
        response = client.post(changelist, form, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "could not be applied, and stays as it was" in page
    event.refresh_from_db()
    assert event.outcome == CallbackOutcome.ERROR and event.attempts == 5

    client.post(changelist, form)  # the database is back
    assert applied(task, event)
