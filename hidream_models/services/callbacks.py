"""Receiving callbacks: the callback view stores them, a background job applies them.

HiDream's callback is answered as soon as it is stored (one row in the app's own database,
whatever the task backend), as webhook senders expect. The view checks the token and that
the body is a task result at all; the job checks its fields (the serializer) and applies it:
it locks the task, updates its pictures and queues their downloads.

Jobs are batched: a web process queues at most one ``apply_received_callbacks`` job per
``HIDREAM_CALLBACK_BATCH_WINDOW``, to run twice the window after the first callback, and
that job applies every callback still ``received`` and never tried. Whatever a lost or late
job leaves ``received`` is applied by the next job, or by the sweep of ``hidream_sync`` once
older than ``UNAPPLIED_AFTER``.

What applying a callback can end in:

- ``applied`` / ``unchanged``: done (``unchanged``: the task had it already).
- ``invalid`` (final): the body is at fault, and applying it again would fail the same way:
  it cannot be read, is not a task result, or names another HiDream task. Only the
  exceptions that say so count (``BODY_ERRORS``); a plain ``ValueError`` from the code that
  applies it is a bug, not a bad body.
- still ``received``: anything else went wrong (a database error, a lock timeout, storage, a
  bug). The attempt is counted (``CallbackEvent.attempts``) and its traceback kept; the
  sweep tries again with backoff (``next_attempt_at``), at most once per pass.
- ``error`` (final): ``HIDREAM_MAX_ATTEMPTS`` attempts failed, over ``HIDREAM_TASK_DEADLINE`` at
  least; the message says why.

Staff can apply an ``error``, ``invalid`` or ``received`` event again
(``reapply_callback_event``, the admin's "Apply again"), say once the bug is fixed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import hidream_settings
from ..exceptions import HiDreamAPIError
from ..logging import mask_callback_tokens
from ..models import CallbackEvent, CallbackOutcome
from ..payloads import (
    PayloadError,
    TaskResultPayload,
    UnreadableJSON,
    check_task_result_shape,
    loads_json,
    parse_task_result,
    strip_nul,
)
from .results import apply_result
from .scheduling import backend_can_defer

logger = logging.getLogger(__name__)

# What a body that cannot be a task result raises while it is read (``read_json``'s three,
# the parser's two), or while it is applied (``PayloadError``: it names another HiDream task).
# Nothing broader: a bare ValueError is a bug of the code, and applying again may mend it.
BODY_ERRORS = (
    json.JSONDecodeError,
    UnicodeDecodeError,
    UnreadableJSON,
    PayloadError,
    HiDreamAPIError,
)

# The outcomes staff may apply an event again from ("Apply again"); the jobs and the sweep
# take only "received" ones.
REAPPLICABLE = (CallbackOutcome.RECEIVED, CallbackOutcome.ERROR, CallbackOutcome.INVALID)

# A traceback kept for developers: its end (the exception) is what matters.
TRACEBACK_CHARS = 20_000
ERROR_CHARS = 1_000

# Callbacks applied per query of the job that applies them.
APPLY_BATCH = 100

# A callback still "received" this long after it came has missed its job (lost, refused by
# the broker, or run early by a worker whose clock is ahead): the sweep applies it. Far
# above the batch window, so the sweep does not race the jobs doing their work.
UNAPPLIED_AFTER = timedelta(seconds=10)


def check_callback_body(raw: bytes | str) -> None:
    """That a callback body is a task result at all (the view's check; see ``describe``)."""
    check_task_result_shape(loads_json(raw))


def read_callback_body(raw: bytes) -> TaskResultPayload:
    """Parse and check a callback body; raises one of ``BODY_ERRORS`` (see ``describe``)."""
    return parse_task_result(loads_json(raw))


def describe(exc: Exception) -> str:
    """Staff-facing text for one of ``BODY_ERRORS``."""
    if isinstance(exc, json.JSONDecodeError):
        return _("The body is not valid JSON: %(error)s") % {"error": exc}
    if isinstance(exc, UnicodeDecodeError):
        return _("The body is not UTF-8 JSON.")
    if isinstance(exc, HiDreamAPIError):
        return _("The callback reports an error instead of a result: %(error)s") % {"error": exc}
    return _("The body is not a HiDream task result: %(error)s") % {"error": exc}


def store_callback(task_id, **fields) -> CallbackEvent | None:
    """Insert one ``CallbackEvent``; None when its task is gone (deleted since it was sent).

    No read first: the foreign key tells, and this is the callback view's one write.
    """
    try:
        return CallbackEvent.objects.create(task_id=task_id, **fields)
    except IntegrityError:
        logger.warning("HiDream callback for task %s, which no longer exists: dropped", task_id)
        return None


class _Batcher:
    """When this process last queued the job that applies callbacks (one per window)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last = float("-inf")

    def due(self, window: float) -> bool:
        now = time.monotonic()
        with self.lock:
            if now - self.last < window:
                return False
            self.last = now
            return True

    def reset(self) -> None:
        with self.lock:
            self.last = float("-inf")


_batcher = _Batcher()


def wake_callback_applier() -> None:
    """Make sure a job will apply the callback just stored (after its commit).

    Once per window a process queues ``apply_received_callbacks`` to run twice the window
    later; callbacks stored meanwhile are committed before it runs (the other half of the
    delay allows for the web and worker clocks to differ), so that one job applies them
    all. A backend that cannot defer (the immediate one) gets one job per callback, at once.
    """
    from ..tasks import apply_received_callbacks

    window = hidream_settings.CALLBACK_BATCH_WINDOW
    if window <= 0 or not backend_can_defer(apply_received_callbacks):
        job, batched = apply_received_callbacks, False
    elif _batcher.due(window):
        run_after = timezone.now() + timedelta(seconds=2 * window)
        job, batched = apply_received_callbacks.using(run_after=run_after), True
    else:
        return

    def enqueue() -> None:
        try:
            job.enqueue()
        except Exception:
            if batched:
                _batcher.reset()  # this window has no job: let the next callback queue one
            logger.exception(
                "Could not queue the job that applies HiDream's callbacks; the next callback "
                "or hidream_sync will pick them up"
            )

    transaction.on_commit(enqueue)


def apply_received_callbacks() -> int:
    """Apply the stored callbacks still ``received`` when it starts and never tried, oldest
    first; returns how many it settled (applied, unchanged or invalid).

    Several may run at once (one per web process and window): each takes the callbacks no
    other holds (``skip_locked``), and each callback is applied once. One that fails is
    left for the sweep (which backs off); the others are still applied. Callbacks that
    failed before are the sweep's alone: a job per new callback would try them again at
    every callback's pace, say throughout a database's bad minute.
    """
    # Only what exists now: under steady traffic the next job takes the newer ones.
    received = CallbackEvent.objects.filter(outcome=CallbackOutcome.RECEIVED)
    last = received.aggregate(last=Max("pk"))["last"]
    return _apply_each(received.filter(attempts=0, pk__lte=last or 0), skip_locked=True)


def apply_unapplied_callbacks(now) -> int:
    """The sweep's part: apply the callbacks still ``received`` whose turn has come
    (``next_attempt_at``): ``UNAPPLIED_AFTER`` after they came when never tried (their job
    was lost, refused, or ran too early), later and later after each failed attempt.
    Returns how many it settled."""
    return _apply_each(
        CallbackEvent.objects.filter(
            outcome=CallbackOutcome.RECEIVED, received_at__lt=now - UNAPPLIED_AFTER
        ),
        skip_locked=True,
        due_by=now,
    )


def retry_delay(attempt: int) -> float:
    """Seconds between the ``attempt``-th failed attempt (1-based) and the next: the jobs'
    exponential backoff (``HIDREAM_RETRY_BACKOFF``, capped at ``HIDREAM_RETRY_BACKOFF_MAX``),
    without jitter: it is a schedule, which the one sweep follows."""
    return min(
        hidream_settings.RETRY_BACKOFF * 2 ** min(max(0, attempt - 1), 62),
        hidream_settings.RETRY_BACKOFF_MAX,
    )


def next_attempt_at(received_at: datetime, attempts: int) -> datetime:
    """When the sweep may try an event still ``received`` after ``attempts`` failed attempts.

    Counted from its arrival (the one time the event keeps): ``UNAPPLIED_AFTER``, plus a
    ``retry_delay`` for each failure. A sweep that was down catches up one attempt per pass,
    never more: each pass tries an event once.
    """
    waited = sum(retry_delay(attempt) for attempt in range(1, attempts + 1))
    return received_at + UNAPPLIED_AFTER + timedelta(seconds=waited)


def _apply_each(events, *, skip_locked: bool, due_by: datetime | None = None) -> int:
    settled, after = 0, 0
    while True:
        batch = list(
            events.filter(pk__gt=after)
            .order_by("pk")
            .values_list("pk", "received_at", "attempts")[:APPLY_BATCH]
        )
        if not batch:
            return settled
        for event_id, received_at, attempts in batch:
            if due_by is not None and next_attempt_at(received_at, attempts) > due_by:
                continue  # backing off after a failed attempt
            try:
                # As read: an event another worker has tried since is left to the next turn.
                outcome = apply_callback_event(event_id, skip_locked=skip_locked, attempts=attempts)
            except Exception:
                # Not even the failure could be recorded (say the connection was lost): the
                # event stays "received" as it was, and the ones after it are still applied.
                logger.exception("Applying HiDream callback %s failed; the sweep retries", event_id)
            else:
                settled += outcome not in (None, CallbackOutcome.RECEIVED)
        after = batch[-1][0]


def apply_callback_event(
    event_id: int, *, skip_locked: bool = False, attempts: int | None = None
) -> str | None:
    """Apply one stored callback that is still ``received``; returns its outcome.

    Returns None when the event is gone, was applied already (a second job, or the sweep
    and a late job), has been tried since the caller read its ``attempts`` or, with
    ``skip_locked``, is being applied by another job right now: every event is applied
    once. A failure that is not the body's leaves it ``received`` (``error`` after
    ``HIDREAM_MAX_ATTEMPTS`` attempts), see the module's docstring; should even recording
    that fail, the exception propagates and the event stays as it was.
    """
    return _apply(
        event_id, outcomes=[CallbackOutcome.RECEIVED], skip_locked=skip_locked, attempts=attempts
    )


def reapply_callback_event(event_id: int) -> str | None:
    """Apply a stored callback again, at staff's request (the admin's "Apply again"): one
    that is ``received`` (without waiting for its turn), ``error`` or ``invalid``.

    One attempt, counted like the sweep's; returns the outcome, or None when the event is
    gone or applied by now. It waits for a job applying it at the same moment. Should even
    the record of a failure fail, that is logged and raised: the event stays as it was.
    """
    try:
        return _apply(event_id, outcomes=list(REAPPLICABLE))
    except Exception:
        logger.exception("Applying HiDream callback %s again failed; it stays as it was", event_id)
        raise


def _apply(
    event_id: int, *, outcomes: list[str], skip_locked: bool = False, attempts: int | None = None
) -> str | None:
    with transaction.atomic():
        events = CallbackEvent.objects.select_for_update(skip_locked=skip_locked).filter(
            pk=event_id, outcome__in=outcomes
        )
        if attempts is not None:
            events = events.filter(attempts=attempts)
        event = events.only(
            "pk", "task_id", "body", "outcome", "error", "attempts", "received_at"
        ).first()
        if event is None:
            return None
        event.attempts += 1
        fields = ["outcome", "error", "attempts"]
        try:
            # A savepoint: a failure inside is rolled back to here, and the event's row,
            # locked outside it, still takes the record of what happened.
            with transaction.atomic():
                payload = read_callback_body(event.body.encode("utf-8"))
                outcome = apply_result(event.task_id, payload, source="callback")
        except BODY_ERRORS as exc:
            # The view checked only that it is a task result: a field may be wrong, or the
            # result may be another HiDream task's (after a retry), which only the task tells.
            event.outcome, event.error = CallbackOutcome.INVALID, describe(exc)
            logger.warning(
                "HiDream callback %s for task %s: %s", event.pk, event.task_id, event.error
            )
        except Exception as exc:
            if transaction.get_rollback():
                # Not even the savepoint could be rolled back (the connection is gone): no
                # record can be written; the event stays "received" for the sweep.
                raise
            _record_failure(event, exc)
            fields.append("traceback")
        else:
            event.outcome = (
                CallbackOutcome.APPLIED if outcome.changed else CallbackOutcome.UNCHANGED
            )
            event.error = ""  # any earlier attempt's; its traceback stays, for developers
        event.save(update_fields=fields)
        return event.outcome


def _record_failure(event: CallbackEvent, exc: Exception) -> None:
    """Note a failed attempt on ``event`` (the caller saves): ``received`` again for the
    sweep, or ``error`` once ``HIDREAM_MAX_ATTEMPTS`` attempts have failed and it is older
    than ``HIDREAM_TASK_DEADLINE``: a storage or database outage of some minutes, which the
    backoff spans in a few attempts, must not end a result that HiDream will not resend.

    What is kept is storable (``strip_nul``: an exception's text may quote the body) and
    masked like a log line (``mask_callback_tokens``), though nothing here knows the token.
    """
    reason = mask_callback_tokens(strip_nul(f"{type(exc).__name__}: {exc}"))[:ERROR_CHARS]
    text = "".join(traceback.format_exception(exc))
    event.traceback = mask_callback_tokens(strip_nul(text))[-TRACEBACK_CHARS:]
    limit = hidream_settings.MAX_ATTEMPTS
    age = (timezone.now() - event.received_at).total_seconds()
    if event.attempts < limit or age < hidream_settings.TASK_DEADLINE:
        event.outcome = CallbackOutcome.RECEIVED
        event.error = _("Attempt %(n)s failed; it will be tried again: %(error)s") % {
            "n": event.attempts,
            "error": reason,
        }
        logger.warning(
            "Applying HiDream callback %s for task %s failed (attempt %s of %s); the sweep "
            "tries again",
            event.pk,
            event.task_id,
            event.attempts,
            limit,
            exc_info=exc,
        )
    else:
        event.outcome = CallbackOutcome.ERROR
        event.error = _("Given up after %(n)s attempts: %(error)s") % {
            "n": event.attempts,
            "error": reason,
        }
        logger.error(
            "Applying HiDream callback %s for task %s failed %s times; given up (staff can "
            "apply it again)",
            event.pk,
            event.task_id,
            event.attempts,
            exc_info=exc,
        )
