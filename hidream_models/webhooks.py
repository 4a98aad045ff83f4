"""The callback receiver: ``POST /hidream/callback/<task uuid>/<token>/``.

HiDream's callback is unsigned (API-REFERENCE §5), so the per-task token in the URL is the
only key (DESIGN §5). The view verifies before it parses: a wrong token looks exactly like an
unknown task (404, nothing written). A valid callback is stored as a ``CallbackEvent`` before
it is applied, and answered in milliseconds: no remote call and no download happens here,
downloads are enqueued for the task worker.
"""

from __future__ import annotations

import hmac
import json
import logging

from django.db import transaction
from django.http import JsonResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from .conf import hidream_settings
from .exceptions import HiDreamAPIError
from .models import CallbackEvent, CallbackOutcome, ModelImageTask, new_callback_token
from .payloads import PayloadError, loads_json, parse_task_result, strip_nul
from .services import apply_result

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


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class HiDreamCallbackView(APIView):
    """Receives HiDream's task-result callback for one task.

    JSON only, no authentication classes (so no session, no CSRF), no content negotiation
    surprises; the body is read by hand so the size limit holds before anything is parsed.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []
    http_method_names = ["post", "options"]
    schema = None  # HiDream's endpoint, not part of the shop's API schema

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
        raw = request._request.read(limit + 1)
        if len(raw) > limit:
            return _rejected(413, _("Body too large: the limit is %(max)s bytes.") % {"max": limit})

        # One transaction for the event, the result and the outcome (one commit, not three);
        # the result is applied in a savepoint, so a failure still leaves the event stored.
        with transaction.atomic():
            event = CallbackEvent.objects.create(
                task_id=task.pk,
                remote_addr=request.META.get("REMOTE_ADDR") or None,
                headers=strip_nul(_clean_headers(request)),
                body=raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
            )
            try:
                with transaction.atomic():
                    body = loads_json(raw)
                    payload = parse_task_result(body)
                    outcome = apply_result(task.pk, payload, source="callback")
            except (ValueError, PayloadError, HiDreamAPIError) as exc:
                # json.JSONDecodeError and UnicodeDecodeError are ValueErrors too.
                message = _describe(exc)
                event.outcome, event.error = CallbackOutcome.INVALID, message
                event.save(update_fields=["outcome", "error"])
                return _rejected(400, message)
            except Exception as exc:
                logger.exception("Applying callback %s for task %s failed", event.pk, task.pk)
                event.outcome = CallbackOutcome.ERROR
                event.error = f"{type(exc).__name__}: {exc}"
                event.save(update_fields=["outcome", "error"])
                return _rejected(500, _("The callback could not be applied; it was stored."))
            event.outcome = (
                CallbackOutcome.APPLIED if outcome.changed else CallbackOutcome.UNCHANGED
            )
            event.save(update_fields=["outcome"])
        return JsonResponse({"ok": True, "status": outcome.status})


def _describe(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return _("The body is not valid JSON: %(error)s") % {"error": exc}
    if isinstance(exc, UnicodeDecodeError):
        return _("The body is not UTF-8 JSON.")
    if isinstance(exc, HiDreamAPIError):
        return _("The callback reports an error instead of a result: %(error)s") % {"error": exc}
    return _("The body is not a HiDream task result: %(error)s") % {"error": exc}
