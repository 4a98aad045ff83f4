"""Receiving callbacks: the callback view checks and queues, a background job stores and applies.

HiDream's callback is answered as soon as it is checked and queued, as webhook senders
expect. The queued job (``receive_callback``) carries the body: with the database backend
its row is the durable copy, written by the view's one write. The job stores the body as a
``CallbackEvent`` and applies it (locking the task, updating its pictures, queueing
downloads). If the job dies between the two, the event stays ``received`` and the sweep of
``hidream_sync`` applies it; if the job itself is lost (a broker that forgot it), the
task's result is what is lost, and polling fetches it, as for any callback that never came.
"""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from ..exceptions import HiDreamAPIError
from ..models import CallbackEvent, CallbackOutcome, ModelImageTask
from ..payloads import PayloadError, TaskResultPayload, loads_json, parse_task_result
from .results import apply_result

logger = logging.getLogger(__name__)

# What a body that cannot be a task result raises while it is read.
BODY_ERRORS = (ValueError, PayloadError, HiDreamAPIError)


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


def record_callback(
    task_id,
    *,
    body: str,
    headers: dict,
    remote_addr: str | None,
    received_at=None,
    outcome: str = CallbackOutcome.RECEIVED,
    error: str = "",
) -> CallbackEvent | None:
    """Store one callback as it came; None when its task is gone (deleted since it was sent).

    ``body`` and ``headers`` are the view's: secrets removed, NUL characters replaced.
    """
    if not ModelImageTask.objects.filter(pk=task_id).exists():
        logger.warning("HiDream callback for task %s, which no longer exists: dropped", task_id)
        return None
    fields = {"received_at": received_at} if received_at else {}
    return CallbackEvent.objects.create(
        task_id=task_id,
        remote_addr=remote_addr or None,
        headers=headers,
        body=body,
        outcome=outcome,
        error=error,
        **fields,
    )


def receive_callback(
    task_id: str, body: str, headers: dict, remote_addr: str | None, received_at: str
) -> str | None:
    """Store a callback the view checked and queued, then apply it; returns its outcome.

    None when its task is gone. ``received_at`` is the view's clock, in ISO 8601.
    """
    event = record_callback(
        task_id,
        body=body,
        headers=headers,
        remote_addr=remote_addr,
        received_at=parse_datetime(received_at),
    )
    if event is None:
        return None
    return apply_callback_event(event.pk)


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
            # The view checked the body, so this is a task that moved on meanwhile (say, a
            # result for another HiDream task after a retry).
            event.outcome, event.error = CallbackOutcome.INVALID, describe(exc)
        except Exception as exc:
            logger.exception("Applying callback %s for task %s failed", event.pk, event.task_id)
            event.outcome, event.error = CallbackOutcome.ERROR, f"{type(exc).__name__}: {exc}"
        else:
            event.outcome = (
                CallbackOutcome.APPLIED if outcome.changed else CallbackOutcome.UNCHANGED
            )
        event.save(update_fields=["outcome", "error"])
        return event.outcome
