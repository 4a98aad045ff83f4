"""Where a task's status moves: the state machine of DESIGN §4, enforced in one place.

Every change of ``ModelImageTask.status`` goes through this module, as a compare-and-set: one
conditional ``UPDATE`` that matches the row only while it is still in a state the move is
allowed from (``SOURCES``) and, for the work of a submit, only while the caller's claim is
the current one. Whoever loses a race (a callback already moved the task on, the sweep took
over a slow worker's claim, another worker got there first) changes nothing; the loss is
logged and the caller is told, so it neither sends nor records.

The claim (``ModelImageTask.claim``) is a fencing number: it goes up by one each time a worker
claims a queued task to send it, and each time the sweep takes a claim over from a worker
that outlived its lease. A worker holds the number it claimed with; once the number has moved
on, every write it tries (the "request sent" mark before sending, the record of HiDream's
answer, a deferral, a failure) matches no row.

Code that holds the task row locked and has worked out its next state in memory (applying a
result) saves with ``save_locked``, which checks the move and writes it under the same
condition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from ..models import ModelImageTask, TaskStatus

logger = logging.getLogger(__name__)

# A task whose request has left: being sent, unconfirmed, or back in the queue to be sent
# again (a result or a late answer that shows HiDream has it cancels that resend).
_SENT = frozenset({TaskStatus.QUEUED, TaskStatus.SUBMITTING, TaskStatus.UNCONFIRMED})
_AT_HIDREAM = _SENT | {TaskStatus.SUBMITTED, TaskStatus.PROCESSING}

#: For each state, the states a task may move to it from (DESIGN §4).
SOURCES: dict[str, frozenset[str]] = {
    # Back to the queue: a submit deferred, retried or never sent (SUBMITTING); an
    # unconfirmed one resent because the shop chose HIDREAM_RESEND_UNCONFIRMED (UNCONFIRMED).
    TaskStatus.QUEUED: frozenset({TaskStatus.SUBMITTING, TaskStatus.UNCONFIRMED}),
    TaskStatus.SUBMITTING: frozenset({TaskStatus.QUEUED}),
    # No answer came; or the deadline passed while it waited to be sent again (QUEUED).
    TaskStatus.UNCONFIRMED: frozenset({TaskStatus.SUBMITTING, TaskStatus.QUEUED}),
    # HiDream's answer; or its result (a callback, a poll) that came before the answer did.
    TaskStatus.SUBMITTED: _SENT,
    TaskStatus.PROCESSING: _SENT | {TaskStatus.SUBMITTED},
    TaskStatus.SUCCEEDED: _AT_HIDREAM,
    TaskStatus.PARTIAL: _AT_HIDREAM,
    # Refused before or by HiDream, given up, or past the deadline.
    TaskStatus.FAILED: _AT_HIDREAM,
}


class HiDreamStateConflict(Exception):
    """A task locked for an update was no longer in the state it was read in, or the move
    is not one of the state machine's; ``str()`` says which. The transaction is rolled
    back by the exception, so nothing of the update is kept."""


def sources_of(target: str, expected: Iterable[str] | None = None) -> frozenset[str]:
    """The states a move to ``target`` may start from, narrowed to ``expected`` if given."""
    sources = SOURCES[target]
    if expected is not None:
        narrowed = sources & frozenset(expected)
        if not narrowed:
            raise HiDreamStateConflict(
                f"{sorted(expected)} → {target} is not a move of the task state machine"
            )
        sources = narrowed
    return sources


def move(
    task_id,
    target: str,
    *,
    expected: Iterable[str] | None = None,
    fence: int | None = None,
    where: Q | None = None,
    take_over: bool = False,
    **fields,
) -> bool:
    """Move one task to ``target`` if it is still in a state allowed (and ``expected``).

    ``fence``: the move is one of a submit's steps, made only while ``fence`` is the task's
    current claim. ``take_over``: the claim is taken from whoever held it (the sweep), so a
    worker still holding it is fenced out. ``where``: a further condition on the row.
    ``fields``: other columns written in the same statement. True if the task moved.
    """
    rows = ModelImageTask.objects.filter(pk=task_id, status__in=sources_of(target, expected))
    if fence is not None:
        rows = rows.filter(claim=fence)
    if where is not None:
        rows = rows.filter(where)
    if take_over:
        fields["claim"] = F("claim") + 1
    fields.setdefault("updated_at", timezone.now())
    moved = rows.update(status=target, **fields)
    if not moved:
        _log_lost(task_id, target, fence)
    return bool(moved)


def move_all(tasks: QuerySet, target: str, *, expected: Iterable[str], **fields) -> int:
    """Move every task of ``tasks`` still in an ``expected`` state to ``target``; how many."""
    fields.setdefault("updated_at", timezone.now())
    return tasks.filter(status__in=sources_of(target, expected)).update(status=target, **fields)


def claim(task_id) -> ModelImageTask | None:
    """Claim a queued task to send it: ``queued → submitting`` with a new claim number.

    Returns the task as claimed (``task.claim`` is the caller's fence), or None when another
    worker claimed it first or it is no longer queued.
    """
    with transaction.atomic():
        task = ModelImageTask.objects.select_for_update().filter(pk=task_id).first()
        if task is None or task.status != TaskStatus.QUEUED:
            return None
        task.status = TaskStatus.SUBMITTING
        task.attempts += 1
        task.claim += 1
        task.next_attempt_at = None
        task.updated_at = timezone.now()
        if not move(
            task.pk,
            TaskStatus.SUBMITTING,
            expected=[TaskStatus.QUEUED],
            fence=task.claim - 1,
            attempts=task.attempts,
            claim=task.claim,
            next_attempt_at=None,
            updated_at=task.updated_at,
        ):
            return None
    return task


def still_holds(task: ModelImageTask, **fields) -> bool:
    """Write ``fields`` on a task being submitted only while ``task.claim`` is current.

    The fence before anything leaves for HiDream: False means another holds the task now.
    """
    held = ModelImageTask.objects.filter(
        pk=task.pk, status=TaskStatus.SUBMITTING, claim=task.claim
    ).update(**fields)
    if not held:
        logger.warning(
            "Task %s: claim %s was taken over; this worker stops without sending",
            task.pk,
            task.claim,
        )
    return bool(held)


def save_locked(task: ModelImageTask, read_status: str) -> None:
    """Save a task whose row the caller holds locked, read in ``read_status``.

    The save is one ``UPDATE`` conditional on that state; a status changed in memory must be
    a move of the state machine. Raises ``HiDreamStateConflict`` otherwise, which rolls back
    the caller's transaction.
    """
    if task.status != read_status and read_status not in SOURCES[task.status]:
        raise HiDreamStateConflict(
            f"Task {task.pk}: {read_status} → {task.status} is not a move of the state machine"
        )
    task.updated_at = timezone.now()
    values = {
        field.attname: getattr(task, field.attname)
        for field in ModelImageTask._meta.concrete_fields
        if not field.primary_key
    }
    if not ModelImageTask.objects.filter(pk=task.pk, status=read_status).update(**values):
        raise HiDreamStateConflict(
            f"Task {task.pk} is no longer {read_status}: another process changed it"
        )


def _log_lost(task_id, target: str, fence: int | None) -> None:
    current = ModelImageTask.objects.filter(pk=task_id).values_list("status", "claim").first()
    if current is None:
        logger.info("Task %s: not moved to %s, it no longer exists", task_id, target)
        return
    logger.info(
        "Task %s: not moved to %s, it lost a race (now %s, claim %s; this move's claim %s)",
        task_id,
        target,
        current[0],
        current[1],
        fence,
    )
