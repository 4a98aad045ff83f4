"""Receiving callbacks: the callback view stores them, a background job applies them.

HiDream's callback is answered as soon as it is stored (one row in the app's own database,
whatever the task backend), as webhook senders expect. The view checks the token and that
the body is a task result at all; the job checks its fields (the serializer) and applies it:
it locks the task, updates its pictures and queues their downloads.

Jobs are batched: a web process queues at most one ``apply_received_callbacks`` job per
``HIDREAM_CALLBACK_BATCH_WINDOW``, to run twice the window after the first callback, and
that job applies every callback still ``received``. Whatever a lost job leaves ``received``
is applied by the next job, or by the sweep of ``hidream_sync`` once older than the lease.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from django.db import IntegrityError, transaction
from django.tasks import task_backends
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
from .scheduling import enqueue_after_commit

logger = logging.getLogger(__name__)

# What a body that cannot be a task result raises while it is read.
BODY_ERRORS = (ValueError, PayloadError, HiDreamAPIError)

# Callbacks applied per query of the job that applies them.
APPLY_BATCH = 100


def check_callback_body(raw: bytes) -> None:
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
    can_defer = task_backends[apply_received_callbacks.backend].supports_defer
    if window <= 0 or not can_defer:
        enqueue_after_commit(apply_received_callbacks)
    elif _batcher.due(window):
        enqueue_after_commit(apply_received_callbacks, delay=2 * window)


def apply_received_callbacks() -> int:
    """Apply every stored callback still ``received``, oldest first; returns how many.

    Several of these may run at once (one per web process and window): each callback is
    applied once all the same (``apply_callback_event``).
    """
    applied, seen = 0, set()
    while True:
        batch = [
            pk
            for pk in CallbackEvent.objects.filter(outcome=CallbackOutcome.RECEIVED)
            .order_by("received_at", "pk")
            .values_list("pk", flat=True)[:APPLY_BATCH]
            if pk not in seen
        ]
        if not batch:
            return applied
        for event_id in batch:
            seen.add(event_id)
            applied += apply_callback_event(event_id) is not None


def apply_callback_event(event_id: int) -> str | None:
    """Apply one stored callback that is still ``received``; returns its outcome.

    Returns None when the event is gone or was applied already (a second job, or the sweep
    and a late job): every event is applied once.
    """
    with transaction.atomic():
        event = (
            CallbackEvent.objects.select_for_update()
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
