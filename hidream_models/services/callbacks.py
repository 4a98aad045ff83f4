"""Receiving callbacks: the callback view stores them, a background job applies them.

HiDream's callback is answered as soon as it is stored (one row in the app's own database,
whatever the task backend), as webhook senders expect. The view checks the token and that
the body is a task result at all; the job checks its fields (the serializer) and applies it:
it locks the task, updates its pictures and queues their downloads.

Jobs are batched: a web process queues at most one ``apply_received_callbacks`` job per
``HIDREAM_CALLBACK_BATCH_WINDOW``, to run twice the window after the first callback, and
that job applies every callback still ``received``. Whatever a lost or late job leaves
``received`` is applied by the next job, or by the sweep of ``hidream_sync`` once older than
``UNAPPLIED_AFTER``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import hidream_settings
from ..exceptions import HiDreamAPIError
from ..models import CallbackEvent, CallbackOutcome
from ..payloads import (
    PayloadError,
    TaskResultPayload,
    check_task_result_shape,
    loads_json,
    parse_task_result,
)
from .results import apply_result
from .scheduling import backend_can_defer

logger = logging.getLogger(__name__)

# What a body that cannot be a task result raises while it is read.
BODY_ERRORS = (ValueError, PayloadError, HiDreamAPIError)

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
    """Apply the stored callbacks still ``received`` when it starts, oldest first; returns
    how many it applied.

    Several may run at once (one per web process and window): each takes the callbacks no
    other holds (``skip_locked``), and each callback is applied once. One that fails is
    logged and left for the sweep; the others are still applied.
    """
    # Only what exists now: under steady traffic the next job takes the newer ones.
    last = CallbackEvent.objects.filter(outcome=CallbackOutcome.RECEIVED).aggregate(
        last=Max("pk")
    )["last"]
    return _apply_each(
        CallbackEvent.objects.filter(outcome=CallbackOutcome.RECEIVED, pk__lte=last or 0),
        skip_locked=True,
    )


def apply_unapplied_callbacks(now) -> int:
    """The sweep's part: apply the callbacks still ``received`` ``UNAPPLIED_AFTER`` after
    they came (their job was lost, refused, or ran too early); returns how many."""
    return _apply_each(
        CallbackEvent.objects.filter(
            outcome=CallbackOutcome.RECEIVED, received_at__lt=now - UNAPPLIED_AFTER
        ),
        skip_locked=True,
    )


def _apply_each(events, *, skip_locked: bool) -> int:
    applied, after = 0, 0
    while True:
        batch = list(
            events.filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:APPLY_BATCH]
        )
        if not batch:
            return applied
        for event_id in batch:
            try:
                applied += apply_callback_event(event_id, skip_locked=skip_locked) is not None
            except Exception:
                # Say a lost connection or a lock timeout: the event stays "received" for
                # the sweep, and the ones after it are still applied.
                logger.exception("Applying HiDream callback %s failed; the sweep retries", event_id)
        after = batch[-1]


def apply_callback_event(event_id: int, *, skip_locked: bool = False) -> str | None:
    """Apply one stored callback that is still ``received``; returns its outcome.

    Returns None when the event is gone, was applied already (a second job, or the sweep
    and a late job) or, with ``skip_locked``, is being applied by another job right now:
    every event is applied once.
    """
    with transaction.atomic():
        event = (
            CallbackEvent.objects.select_for_update(skip_locked=skip_locked)
            .filter(pk=event_id, outcome=CallbackOutcome.RECEIVED)
            .only("pk", "task_id", "body", "outcome", "error")
            .first()
        )
        if event is None:
            return None
        try:
            # A savepoint: a failure inside leaves the event's row, to record what happened.
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
            logger.exception("Applying callback %s for task %s failed", event.pk, event.task_id)
            event.outcome, event.error = CallbackOutcome.ERROR, f"{type(exc).__name__}: {exc}"
        else:
            event.outcome = (
                CallbackOutcome.APPLIED if outcome.changed else CallbackOutcome.UNCHANGED
            )
        event.save(update_fields=["outcome", "error"])
        return event.outcome
