"""Staff's part in applying callbacks: "Apply again" on the callback log, as dj-stripe can
reprocess a webhook event, and who sees a failed attempt's traceback.

A callback whose applying failed for a reason of its own (a database error, a lock timeout, a
bug) is retried by the sweep, and ends ``error`` after ``HIDREAM_MAX_ATTEMPTS`` attempts
(``services.callbacks``). Once the cause is mended (a bug fixed, a constraint relaxed), staff
apply it again here; an ``invalid`` one too, say after a parser fix, and a ``received`` one
without waiting for its turn. Applying a callback changes its task, so it takes the task's
change permission; so does reading the traceback, which is for developers.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from ..logging import mask_callback_tokens
from ..models import CallbackEvent, CallbackOutcome
from ..payloads import printable
from ..services.callbacks import REAPPLICABLE, reapply_callback_event

REAPPLY_PERMISSION = "hidream_models.change_modelimagetask"

# Per-event lines at most in one answer; the rest are counted.
MAX_EVENT_MESSAGES = 10


class CallbackReapplyMixin:
    """For ``CallbackEventAdmin``: the "Apply again" action, and the traceback field shown
    only to those allowed to act on it (``traceback_text``, from ``CallbackEventDisplay``)."""

    actions = ("apply_again",)
    traceback_field = "traceback_text"

    def has_reapply_permission(self, request) -> bool:
        return request.user.has_perm(REAPPLY_PERMISSION)

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        if not self.has_reapply_permission(request):
            fields = [field for field in fields if field != self.traceback_field]
        return fields

    @admin.action(description=gettext_lazy("Apply again"), permissions=["reapply"])
    def apply_again(self, request, queryset):
        """Apply each chosen callback once more, now, and say how each went. Callbacks
        applied already are left alone (HiDream's result is in their task)."""
        chosen = list(queryset.order_by("pk").values_list("pk", "task_id", "outcome"))
        done = {CallbackOutcome.APPLIED: 0, CallbackOutcome.UNCHANGED: 0}
        skipped, lines = 0, []
        for event_id, task_id, outcome in chosen:
            if outcome not in REAPPLICABLE:
                skipped += 1
                continue
            names = {"id": event_id, "task": task_id}
            try:
                outcome = reapply_callback_event(event_id)
            except Exception as exc:
                # Logged by the service; the event is as it was (nothing could be written).
                names["error"] = printable(mask_callback_tokens(f"{type(exc).__name__}: {exc}"))
                text = _(
                    "Callback %(id)s (task %(task)s) could not be applied, and stays as it "
                    "was: %(error)s"
                )
                lines.append((messages.ERROR, text % names))
                continue
            if outcome in done:
                done[outcome] += 1
            elif outcome is None:
                skipped += 1  # applied by a job meanwhile, or deleted with its task
            else:
                lines.append(self._event_line(event_id, names))
        self._report(request, done, skipped, lines)

    @staticmethod
    def _event_line(event_id, names: dict) -> tuple[int, str]:
        """A warning or an error naming the event, its task, and what its ``error`` says
        (an invalid body's fault, or a failed attempt: retried later, or given up)."""
        row = CallbackEvent.objects.filter(pk=event_id).values_list("outcome", "error").first()
        outcome, error = row or (None, "")
        names["error"] = printable(error)
        if outcome == CallbackOutcome.INVALID:
            text = _("Callback %(id)s (task %(task)s) is invalid: %(error)s")
        elif outcome == CallbackOutcome.RECEIVED:
            text = _("Callback %(id)s (task %(task)s) failed again: %(error)s")
        else:
            return messages.ERROR, _("Callback %(id)s (task %(task)s) failed: %(error)s") % names
        return messages.WARNING, text % names

    def _report(self, request, done: dict, skipped: int, lines: list) -> None:
        applied, unchanged = done[CallbackOutcome.APPLIED], done[CallbackOutcome.UNCHANGED]
        if applied:
            self.message_user(
                request,
                ngettext("%(n)s callback applied.", "%(n)s callbacks applied.", applied)
                % {"n": applied},
                messages.SUCCESS,
            )
        if unchanged:
            self.message_user(
                request,
                ngettext(
                    "%(n)s callback applied; its task had that result already.",
                    "%(n)s callbacks applied; their tasks had those results already.",
                    unchanged,
                )
                % {"n": unchanged},
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(n)s callback skipped: it is applied already.",
                    "%(n)s callbacks skipped: they are applied already.",
                    skipped,
                )
                % {"n": skipped},
                messages.INFO,
            )
        for level, text in lines[:MAX_EVENT_MESSAGES]:
            self.message_user(request, text, level)
        more = len(lines) - MAX_EVENT_MESSAGES
        if more > 0:
            self.message_user(
                request,
                ngettext(
                    "%(n)s more callback did not apply; filter the list by outcome to see it.",
                    "%(n)s more callbacks did not apply; filter the list by outcome to see them.",
                    more,
                )
                % {"n": more},
                messages.WARNING,
            )
