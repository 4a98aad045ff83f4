"""The callback receiver: ``POST /hidream/callback/<task uuid>/<token>/``.

HiDream's callback is unsigned (API-REFERENCE §5), so the per-task token in the URL is the
only key (DESIGN §5). It is an HMAC of the task id (``tokens``), checked before anything is
read: a wrong token looks exactly like an unknown task (404, nothing written, no query).
A body that is a task result is stored as a ``CallbackEvent`` (the view's one write) and
answered 200 in milliseconds; a job applies it (``services.callbacks``), checking its
fields first. A body that is not a task result at all is answered 400 (and stored as
``invalid`` if its task exists).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .conf import hidream_settings
from .models import CallbackOutcome
from .payloads import strip_nul
from .services.callbacks import (
    BODY_ERRORS,
    check_callback_body,
    describe,
    store_callback,
    wake_callback_applier,
)
from .tokens import is_valid_callback_token

logger = logging.getLogger(__name__)

SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key", "x-csrftoken"}


def _clean_headers(request) -> dict[str, str]:
    return {
        key: value for key, value in request.headers.items() if key.lower() not in SECRET_HEADERS
    }


def _error(request, status: int, message: str, *, token_is_valid: bool) -> JsonResponse:
    response = JsonResponse({"ok": False, "error": message}, status=status)
    # Django would log "Bad Request: /hidream/callback/<task>/<token>/" (and e-mail a 500).
    # A valid token is the only key to the URL, so log our own line with it masked; a
    # wrong one is no secret, and logging it shows who is probing.
    path = request.path
    if token_is_valid:
        path = path.rstrip("/").rsplit("/", 1)[0] + "/***/"
    response._has_been_logged = True
    log = logger.error if status >= 500 else logger.warning
    log("HiDream callback %s answered %s: %s", path, status, message)
    return response


@method_decorator([csrf_exempt, transaction.non_atomic_requests], name="dispatch")
class HiDreamCallbackView(View):
    """Receives HiDream's task-result callback for one task: checks it and stores it.

    A plain Django view (no session, no CSRF, no DRF request wrapping: HiDream is no browser
    and this is the hottest URL of the app); the body is read by hand so the size limit holds
    before anything is parsed. Applying the result is the ``apply_received_callbacks`` job's.
    """

    http_method_names = ["post", "options"]

    def http_method_not_allowed(self, request, *args, **kwargs):
        # JSON like every other answer of this URL, with the Allow header Django would set.
        response = JsonResponse(
            {
                "ok": False,
                "error": _("Method %(method)s not allowed; HiDream POSTs here.")
                % {"method": request.method},
            },
            status=405,
        )
        response["Allow"] = ", ".join(self._allowed_methods())
        return response

    def post(self, request, task_id, token):
        if not is_valid_callback_token(task_id, token):
            return _error(request, 404, _("Not found."), token_is_valid=False)

        def _rejected(status: int, message: str) -> JsonResponse:
            return _error(request, status, message, token_is_valid=True)

        limit = hidream_settings.MAX_CALLBACK_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _rejected(400, _("Invalid Content-Length header."))
        if declared > limit:
            return _rejected(
                413,
                _("Body too large: %(n)s bytes; the limit is %(max)s.")
                % {"n": declared, "max": limit},
            )
        raw = request.read(limit + 1)
        if len(raw) > limit:
            return _rejected(413, _("Body too large: the limit is %(max)s bytes.") % {"max": limit})

        received = {
            "body": raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
            "headers": strip_nul(_clean_headers(request)),
            "remote_addr": request.META.get("REMOTE_ADDR") or None,
        }
        # Only that it is a task result at all, so HiDream hears at once about a body that is
        # not; its fields are checked by the job that applies it (an invalid one is kept and
        # marked so there: HiDream resending the same body would not mend it).
        try:
            check_callback_body(raw)
        except BODY_ERRORS as exc:
            problem = describe(exc)
            store_callback(task_id, outcome=CallbackOutcome.INVALID, error=problem, **received)
            return _rejected(400, problem)

        try:
            event = store_callback(task_id, outcome=CallbackOutcome.RECEIVED, **received)
        except DatabaseError:
            # Answered here, not by Django's 500 page, whose log line would show the token.
            logger.exception("Could not store HiDream's callback for task %s", task_id)
            return _rejected(
                503, _("The callback could not be stored; please send it again later.")
            )
        if event is None:
            # A right token for a task deleted since: nothing to apply it to.
            return _error(request, 404, _("Not found."), token_is_valid=True)
        wake_callback_applier()
        # 200, not 202: HiDream counts only a 200 as delivered (API-REFERENCE §5).
        return JsonResponse({"ok": True, "outcome": CallbackOutcome.RECEIVED})
