"""The callback receiver: ``POST /hidream/callback/<task uuid>/<token>/``.

HiDream's callback is unsigned (API-REFERENCE §5), so the per-task token in the URL is the
only key (DESIGN §5). The view verifies before it parses: a wrong token looks exactly like an
unknown task (404, nothing written). The body is checked and stored as a ``CallbackEvent``
(one row) and answered in milliseconds; applying it, which locks and updates the task
and its pictures and queues their downloads, is the ``apply_callback_event`` job's
(``services.callbacks``). A body that is not a task result is stored as ``invalid`` and
answered 400.
"""

from __future__ import annotations

import hmac
import logging

from django.db import transaction
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .conf import hidream_settings
from .models import CallbackEvent, CallbackOutcome, ModelImageTask, new_callback_token
from .payloads import strip_nul
from .services.callbacks import BODY_ERRORS, describe, read_callback_body
from .services.scheduling import enqueue_after_commit
from .tasks import apply_callback_event

logger = logging.getLogger(__name__)

SECRET_HEADERS = {"authorization", "cookie", "proxy-authorization", "x-api-key", "x-csrftoken"}
_DUMMY_TOKEN = new_callback_token()


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
    """Receives HiDream's task-result callback for one task: checks it, stores it, queues it.

    A plain Django view (no session, no CSRF, no DRF request wrapping: HiDream is no browser
    and this is the hottest URL of the app); the body is read by hand so the size limit holds
    before anything is parsed. Applying the result is the ``apply_callback_event`` job's.
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
        task = ModelImageTask.objects.filter(pk=task_id).only("pk", "callback_token").first()
        expected = task.callback_token if task else _DUMMY_TOKEN
        # Constant-time compare either way, so timing tells nothing about which part was wrong.
        if not hmac.compare_digest(expected.encode(), str(token).encode()) or task is None:
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

        # Checked here, so HiDream hears at once about a body that is not a task result;
        # stored either way (one row), so staff see what was sent.
        try:
            read_callback_body(raw)
        except BODY_ERRORS as exc:
            problem = describe(exc)
        else:
            problem = None
        event = CallbackEvent.objects.create(
            task_id=task.pk,
            remote_addr=request.META.get("REMOTE_ADDR") or None,
            headers=strip_nul(_clean_headers(request)),
            body=raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
            outcome=CallbackOutcome.INVALID if problem else CallbackOutcome.RECEIVED,
            error=problem or "",
        )
        if problem:
            return _rejected(400, problem)
        # After the row is committed (it is: autocommit); if the enqueue is lost, the event
        # stays "received" and the sweep applies it.
        enqueue_after_commit(apply_callback_event, event.pk)
        # 200, not 202: HiDream counts only a 200 as delivered (API-REFERENCE §5).
        return JsonResponse({"ok": True, "outcome": event.outcome})
