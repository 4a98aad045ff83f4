"""One retry per task, however often it is asked for (issue 14, point 2).

Six concurrent API retries of one failed task made six new paid tasks: each request looked for
a retry, found none, and made one. A database constraint now allows one retry of a task; the
other requests get a 409 that links the retry that exists. On PostgreSQL the threads really
race; on SQLite (one writer at a time) the constraint and the look before it still decide.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.urls import reverse
from rest_framework.test import APIClient

from hidream_models import services
from hidream_models.models import ModelImageTask, TaskStatus
from tests import jobs
from tests.api.helpers import make_task, make_user
from tests.reliability.conftest import run_threads

CONCURRENT = 6


def race_api(shared_db, user, send) -> list:
    """``send(client)`` from CONCURRENT threads at once, each an API client of ``user`` on
    its own connection to the shared database; returns the replies (any error fails)."""
    start = threading.Barrier(CONCURRENT)
    replies: list = []
    errors: list[str] = []

    def run():
        shared_db.bind()  # its own connection to the shared database
        client = APIClient()
        client.force_authenticate(user)
        client.raise_request_exception = False
        try:
            start.wait(timeout=10)
            replies.append(send(client))
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connections.close_all()

    run_threads([run] * CONCURRENT)
    assert errors == []
    return replies


def _submits_enqueued() -> list:
    return [job.args for job in jobs.pending_jobs() if job.task.name == "dispatch_submissions"]


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.UNCONFIRMED])
def test_six_concurrent_api_retries_make_one_task_and_five_409s(shared_db, make_product, status):
    user = make_user("retrier", superuser=True)
    failed = make_task(make_product(), status)
    jobs.clear_jobs()
    replies = race_api(
        shared_db,
        user,
        lambda client: client.post(
            f"/api/hidream/tasks/{failed.pk}/retry/", {"resend_unconfirmed": True}, format="json"
        ),
    )

    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [201] + [409] * (CONCURRENT - 1), [r.content[:200] for r in replies]
    retries = ModelImageTask.objects.filter(retry_of=failed)
    assert retries.count() == 1
    retry = retries.get()
    for reply in replies:
        if reply.status_code == 409:
            body = reply.json()
            assert body["retry"] == str(retry.pk)
            assert body["retry_url"].endswith(f"/api/hidream/tasks/{retry.pk}/")
            assert "retried already" in body["detail"]
    assert ModelImageTask.objects.count() == 2
    assert _submits_enqueued() == [[[str(retry.pk)]]]  # one paid submit, not six


def test_a_failed_retry_can_be_retried_in_its_turn(db, make_product):
    failed = make_task(make_product(), TaskStatus.FAILED)
    first = services.retry_task(failed)
    with pytest.raises(services.HiDreamAlreadyRetried) as refused:
        services.retry_task(failed)
    assert refused.value.retry.pk == first.pk
    ModelImageTask.objects.filter(pk=first.pk).update(status=TaskStatus.FAILED)
    first.refresh_from_db()
    second = services.retry_task(first)
    assert second.retry_of_id == first.pk


def test_the_admin_confirm_page_submitted_twice_resends_once_and_links_the_retry(
    admin_client, make_product
):
    from django.contrib.messages import get_messages

    unconfirmed = make_task(make_product(), TaskStatus.UNCONFIRMED)
    url = reverse("admin:hidream_models_modelimagetask_changelist")
    data = {
        "action": "resend_unconfirmed_tasks",
        "_selected_action": [str(unconfirmed.pk)],
        "confirm_resend": "yes",
    }
    first = admin_client.post(url, data)
    second = admin_client.post(url, data)
    assert first.status_code == second.status_code == 302
    retry = ModelImageTask.objects.get(retry_of=unconfirmed)
    said = [str(message) for message in get_messages(second.wsgi_request)]
    link = reverse("admin:hidream_models_modelimagetask_change", args=[retry.pk])
    assert any("retried already" in text and link in text for text in said), said
    assert ModelImageTask.objects.count() == 2


def test_six_concurrent_creates_with_one_key_make_one_task(shared_db, make_product):
    """The key is claimed under a unique constraint before the work starts: the others get
    the first answer again (replayed) or a 409 while it still runs, never a second task."""
    user = make_user("keyholder", superuser=True)
    product = make_product()
    replies = race_api(
        shared_db,
        user,
        lambda client: client.post(
            "/api/hidream/tasks/",
            {"product": f"catalog.product:{product.pk}", "prompt": "studio"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="one-key",
        ),
    )

    assert ModelImageTask.objects.count() == 1
    task = ModelImageTask.objects.get()
    fresh = [r for r in replies if r.status_code == 201 and "Idempotent-Replayed" not in r]
    assert len(fresh) == 1
    for reply in replies:
        assert reply.status_code in (201, 409), reply.content[:200]
        if reply.status_code == 201:
            assert reply.json()["id"] == str(task.pk)
