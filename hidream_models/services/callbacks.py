"""Applying stored callbacks: the callback view stores, a background job applies.

HiDream's callback is answered as soon as it is checked and stored (one row), as webhook
senders expect; applying it (locking the task, updating its pictures, queueing downloads)
is a job of its own, ``apply_callback_event``. If that job is lost (a crash between the
commit and the enqueue, a worker killed), the event stays ``received`` and the sweep of
``hidream_sync`` applies it.
"""

from __future__ import annotations

import json
import logging

from django.db import transaction
from django.utils.translation import gettext as _

from ..exceptions import HiDreamAPIError
from ..models import CallbackEvent, CallbackOutcome
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
