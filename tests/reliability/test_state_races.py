"""Races on a task's state (#14 point 1): every writer moves it by compare-and-set, fenced by
the claim, so no pair of them can send a task twice or push it back.

Each pair that used to overwrite each other runs in threads at once, on the shared database
(PostgreSQL's test database for real parallelism; a SQLite file otherwise), against the
simulator over HTTP where a submit is involved. The threads start together at a barrier, for
several tasks per test; whichever wins, the outcome asserted is the same. A sequential twin of
each race pins the order that used to go wrong.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from hidream_models import services
from hidream_models.models import ModelImageTask, TaskStatus
from hidream_models.payloads import parse_task_result
from hidream_models.services import polling, submission, transitions
from hidream_models.services.limits import lease_seconds
from tests.conftest import wait_for
from tests.reliability.conftest import race

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TASKS = 6


def _tasks(make_product, count: int = TASKS) -> list[ModelImageTask]:
    options = services.GenerationOptions.validated({"prompt": "studio portrait"})
    products = [make_product() for _ in range(count)]
    return services.create_tasks_for_products(products, options).tasks


def _claimed(make_product, count: int = TASKS, *, sent: bool = False) -> list[ModelImageTask]:
    """Tasks claimed by a worker; ``sent``: and their request has left for HiDream."""
    claimed = [submission.claim_for_submission(task.pk) for task in _tasks(make_product, count)]
    assert all(task is not None for task in claimed)
    if sent:
        ModelImageTask.objects.filter(pk__in=[task.pk for task in claimed]).update(
            request_sent_at=timezone.now()
        )
    return claimed


def _in_progress(remote_task_id: str):
    """HiDream's result while its one picture is still being made (task_status 2)."""
    return parse_task_result(
        {
            "code": 0,
            "message": "ok",
            "result": {
                "task_id": remote_task_id,
                "sub_task_results": [
                    {"sub_task_id": f"{remote_task_id}-0", "task_status": 2, "image": ""}
                ],
            },
        }
    )


def _race(shared_db, pairs) -> list[str]:
    """Run every callable of ``pairs`` (a list of tuples) in its own thread, all at once."""
    return race(shared_db, [target for pair in pairs for target in pair])


def _make_stale(tasks) -> None:
    """As if each claim was made longer ago than a lease: the sweep may take it over."""
    ModelImageTask.objects.filter(pk__in=[task.pk for task in tasks]).update(
        updated_at=timezone.now() - timedelta(seconds=lease_seconds() + 5)
    )


def _submits_per_task(simulator) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in simulator.submissions:
        task_id = record["notify_url"].rstrip("/").split("/")[-2]
        counts[task_id] = counts.get(task_id, 0) + 1
    return counts


@pytest.fixture
def notify_url_names_the_task(settings, simulator):
    """A callback URL in each submit (so the simulator's ledger names our task); HiDream's
    callbacks themselves are not sent, so the test alone decides what arrives."""
    settings.HIDREAM_CALLBACK_BASE_URL = "http://127.0.0.1:9"
    simulator.send_callbacks = False


# --- a callback against the submit's read timeout ---------------------------------------


def test_a_callback_before_the_read_timeout_is_not_pushed_back_to_unconfirmed(
    shared_db, make_product
):
    (task,) = _claimed(make_product, 1, sent=True)
    services.apply_result(task.pk, _in_progress("r-early"), source="callback")
    # The submit's read timeout comes afterwards: the task has moved on, so nothing moves.
    assert submission.mark_unconfirmed(task.pk, "read timeout", claim=task.claim) is None
    task.refresh_from_db()
    assert task.status == TaskStatus.PROCESSING and task.remote_task_id == "r-early"


@pytest.mark.parametrize("resend_unconfirmed", [False, True])
def test_a_callback_racing_the_read_timeout_leaves_the_task_processing_never_resent(
    shared_db, make_product, settings, resend_unconfirmed
):
    settings.HIDREAM_RESEND_UNCONFIRMED = resend_unconfirmed
    tasks = _claimed(make_product, sent=True)

    def callback(task):
        return lambda: services.apply_result(
            task.pk, _in_progress(f"r-{task.pk}"), source="callback"
        )

    def timeout(task):
        return lambda: submission.mark_unconfirmed(task.pk, "read timeout", claim=task.claim)

    assert _race(shared_db, [(callback(task), timeout(task)) for task in tasks]) == []
    for task in tasks:
        task.refresh_from_db()
        # Whichever came first, HiDream's result is what the task shows: never unconfirmed
        # after it, and never queued to be sent (and billed) again.
        assert task.status == TaskStatus.PROCESSING, task.error_message
        assert task.remote_task_id == f"r-{task.pk}"


# --- the sweep taking over a slow worker's claim ----------------------------------------


def test_a_worker_whose_claim_the_sweep_took_over_does_not_send(
    simulator, shared_db, make_product, notify_url_names_the_task
):
    (task,) = _claimed(make_product, 1)
    _make_stale([task])
    assert polling.recover_interrupted_work() == 1  # never sent: queued again, claim taken
    assert services.submit_task(task.pk) == TaskStatus.SUBMITTED  # the new claim sends it
    # The first worker wakes up and carries on with its old claim: it must not send.
    assert submission._submit_claimed(task) is None
    fresh = ModelImageTask.objects.get(pk=task.pk)
    assert fresh.status == TaskStatus.SUBMITTED and fresh.claim == task.claim + 2
    assert simulator.accepted_submits == 1
    assert _submits_per_task(simulator) == {str(task.pk): 1}


def test_the_sweep_racing_slow_workers_sends_each_task_once(
    simulator, shared_db, make_product, notify_url_names_the_task
):
    simulator.set_faults(latency=0.2)
    tasks = _claimed(make_product)
    _make_stale(tasks)

    def worker(task):
        return lambda: submission._submit_claimed(task)

    sweep = polling.recover_interrupted_work
    assert _race(shared_db, [(worker(task),) for task in tasks] + [(sweep,)]) == []
    for task in tasks:  # what the sweep queued again, the next worker sends
        services.submit_task(task.pk)

    counts = _submits_per_task(simulator)
    assert counts == {str(task.pk): 1 for task in tasks}
    assert simulator.accepted_submits == len(tasks)
    for task in tasks:
        task.refresh_from_db()
        # Sent once; the answer recorded, or (the sweep gave up on the worker mid-request)
        # the task is unconfirmed, which a person resolves; never queued to be sent again.
        assert task.status in (TaskStatus.SUBMITTED, TaskStatus.UNCONFIRMED)


def test_an_answer_reaching_a_worker_the_sweep_gave_up_on_is_recorded_and_not_resent(
    simulator, shared_db, make_product, settings, notify_url_names_the_task
):
    """The sweep declares the slow worker dead mid-request; then HiDream's answer reaches it.

    With HIDREAM_RESEND_UNCONFIRMED the sweep has queued the task to be sent again. The late
    answer is recorded (a fact nothing else could learn) and the resend is off: one bill."""
    settings.HIDREAM_RESEND_UNCONFIRMED = True
    simulator.set_faults(latency=1.5)
    (task,) = _claimed(make_product, 1)
    done: list = []

    def slow_worker():
        shared_db.bind()
        try:
            done.append(submission._submit_claimed(task))
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_worker)
    thread.start()
    try:
        wait_for(
            lambda: ModelImageTask.objects.filter(
                pk=task.pk, request_sent_at__isnull=False
            ).exists(),
            message="the worker to send",
        )
        _make_stale([task])
        ModelImageTask.objects.filter(pk=task.pk).update(
            request_sent_at=timezone.now() - timedelta(seconds=lease_seconds())
        )
        assert polling.recover_interrupted_work() == 1
        assert ModelImageTask.objects.get(pk=task.pk).status == TaskStatus.QUEUED
    finally:
        thread.join(timeout=30)
    assert done == [TaskStatus.SUBMITTED]
    assert services.submit_task(task.pk) is None  # the resend finds it submitted
    task.refresh_from_db()
    assert task.status == TaskStatus.SUBMITTED and task.remote_task_id
    assert simulator.accepted_submits == 1


def test_a_worker_fenced_out_by_a_new_claim_records_nothing(shared_db, make_product):
    """The sweep queued the task again and a new worker claimed it: the old worker's late
    answer is not written over the new claim (the new worker's own answer will be)."""
    from hidream_models.client import SubmitResult

    (task,) = _claimed(make_product, 1)
    _make_stale([task])
    assert polling.recover_interrupted_work() == 1
    again = submission.claim_for_submission(task.pk)
    assert again is not None and again.claim == task.claim + 2
    late = SubmitResult("r-late", ("r-late-0",), "q")
    assert submission._record_submission(task, late) is None
    fresh = ModelImageTask.objects.get(pk=task.pk)
    assert fresh.status == TaskStatus.SUBMITTING and fresh.remote_task_id is None


# --- the deadline against a worker claiming --------------------------------------------


def test_the_deadline_and_a_claim_racing_either_fail_the_task_or_send_it(
    simulator, shared_db, make_product, settings, notify_url_names_the_task
):
    settings.HIDREAM_TASK_DEADLINE = 60
    tasks = _tasks(make_product)
    ModelImageTask.objects.update(created_at=timezone.now() - timedelta(minutes=5))

    def worker(task):
        return lambda: services.submit_task(task.pk)

    def deadline():
        polling.expire_overdue_tasks()

    assert _race(shared_db, [(worker(task),) for task in tasks] + [(deadline,)]) == []
    counts = _submits_per_task(simulator)
    for task in tasks:
        task.refresh_from_db()
        sent = counts.get(str(task.pk), 0)
        assert (task.status, sent) in ((TaskStatus.FAILED, 0), (TaskStatus.SUBMITTED, 1))


# --- the one place -------------------------------------------------------------------------


def test_a_move_outside_the_state_machine_is_refused(shared_db, make_product):
    (task,) = _tasks(make_product, 1)
    with pytest.raises(transitions.HiDreamStateConflict):
        transitions.move(task.pk, TaskStatus.SUCCEEDED, expected=[TaskStatus.FAILED])
    ModelImageTask.objects.filter(pk=task.pk).update(status=TaskStatus.SUCCEEDED)
    assert not transitions.move(task.pk, TaskStatus.QUEUED)  # final: nothing moves it back
    assert ModelImageTask.objects.get(pk=task.pk).status == TaskStatus.SUCCEEDED


def test_saving_the_task_page_in_the_admin_writes_nothing_over_a_newer_state(
    shared_db, make_product, admin_client, monkeypatch
):
    """The page's POST reads the row, then saves it: a callback applied in between must not
    be written over (status and claim back as they were read)."""
    from django.urls import reverse

    from hidream_models.admin import ModelImageTaskAdmin

    (task,) = _claimed(make_product, 1, sent=True)
    build = ModelImageTaskAdmin.save_form
    built: list = []

    def callback_while_saving(self, request, form, change):
        obj = build(self, request, form, change)  # the row as the POST read it
        built.append(obj.status)
        services.apply_result(task.pk, _in_progress(f"r-{task.pk}"), source="callback")
        return obj

    monkeypatch.setattr(ModelImageTaskAdmin, "save_form", callback_while_saving)
    url = reverse("admin:hidream_models_modelimagetask_change", args=[task.pk])
    inline = "callback_events"  # the callback log's management form, as the page sends it
    response = admin_client.post(
        url,
        {
            "_save": "Save",
            f"{inline}-TOTAL_FORMS": "0",
            f"{inline}-INITIAL_FORMS": "0",
            f"{inline}-MIN_NUM_FORMS": "0",
            f"{inline}-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 302  # "saved"
    fresh = ModelImageTask.objects.get(pk=task.pk)
    assert built == [TaskStatus.SUBMITTING]
    assert fresh.status == TaskStatus.PROCESSING and fresh.remote_task_id == f"r-{task.pk}"


# --- the sweep's edges (found by reading the change as an attacker) -------------------------


def test_a_task_adopted_from_a_callback_is_polled_and_can_expire(shared_db, make_product):
    """The callback came before the submit's answer, which never came: the task counts as
    submitted from when it was sent, so polling and the deadline still reach it."""
    (task,) = _claimed(make_product, 1, sent=True)
    services.apply_result(task.pk, _in_progress("r-adopted"), source="callback")
    assert submission.mark_unconfirmed(task.pk, "read timeout", claim=task.claim) is None
    fresh = ModelImageTask.objects.get(pk=task.pk)
    assert fresh.submitted_at == fresh.request_sent_at
    later = timezone.now() + timedelta(hours=1)
    assert task.pk in set(polling.tasks_due_for_polling(later).values_list("pk", flat=True))


def test_a_late_answer_never_replaces_the_hidream_task_a_callback_named(shared_db, make_product):
    from hidream_models.client import SubmitResult

    (task,) = _claimed(make_product, 1, sent=True)
    services.apply_result(task.pk, _in_progress("r-first"), source="callback")
    second = SubmitResult("r-second", ("r-second-0",), "q")
    assert submission._record_submission(task, second) is None
    fresh = ModelImageTask.objects.get(pk=task.pk)
    assert fresh.remote_task_id == "r-first" and fresh.sub_task_ids != ["r-second-0"]


def test_the_deadline_makes_a_sent_task_waiting_to_be_resent_unconfirmed_not_failed(
    shared_db, make_product, settings
):
    settings.HIDREAM_TASK_DEADLINE = 60
    sent, never_sent = _tasks(make_product, 2)
    old = timezone.now() - timedelta(minutes=5)
    ModelImageTask.objects.filter(pk=sent.pk).update(created_at=old, request_sent_at=old)
    ModelImageTask.objects.filter(pk=never_sent.pk).update(created_at=old)
    assert polling.expire_overdue_tasks() == 2
    sent.refresh_from_db()
    never_sent.refresh_from_db()
    assert sent.status == TaskStatus.UNCONFIRMED and "billed" in sent.error_message
    assert never_sent.status == TaskStatus.FAILED


def test_a_poll_answered_for_another_task_does_not_stop_the_sweep(
    shared_db, make_product, settings
):
    from tests.stub_server import StubServer, envelope

    settings.HIDREAM_TASK_DEADLINE = 86400
    (task,) = _tasks(make_product, 1)
    ModelImageTask.objects.filter(pk=task.pk).update(
        status=TaskStatus.SUBMITTED,
        remote_task_id="r-ours",
        sub_task_ids=["r-ours-0"],
        submitted_at=timezone.now() - timedelta(hours=1),
        request_sent_at=timezone.now() - timedelta(hours=1),
    )
    (stuck,) = _claimed(make_product, 1)  # a worker died before sending it
    _make_stale([stuck])
    other = envelope(
        {"task_id": "r-other", "sub_task_results": [{"sub_task_id": "x", "task_status": 2}]}
    )
    with StubServer([(200, {"Content-Type": "application/json"}, other, 0)]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        settings.HIDREAM_CALLBACK_BASE_URL = ""
        report = services.sync_pass()
    assert report.polled == 1 and report.errors == 0 and report.recovered == 1
    task.refresh_from_db()
    assert "could not be applied" in task.error_message and "r-other" in task.error_message


def test_a_queued_task_whose_job_was_lost_is_sent_by_the_sweep_once(
    simulator, shared_db, make_product, notify_url_names_the_task
):
    """A worker's pool process killed holding the task's first job: nothing else would ever
    send it. The sweep does, once no job has touched it for a lease."""
    lost, fresh = _tasks(make_product, 2)
    ModelImageTask.objects.filter(pk=lost.pk).update(
        updated_at=timezone.now() - timedelta(seconds=lease_seconds() + 5)
    )
    report = services.sync_pass()
    assert report.resubmitted == 1
    lost.refresh_from_db()
    fresh.refresh_from_db()
    assert lost.status == TaskStatus.SUBMITTED
    assert fresh.status == TaskStatus.QUEUED  # its job may well be on its way
    assert _submits_per_task(simulator) == {str(lost.pk): 1}
