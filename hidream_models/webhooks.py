"""The callback receiver: ``POST /hidream/callback/<task uuid>/<token>/`` (the slash optional).

HiDream's callback is unsigned (API-REFERENCE §5), so the per-task token in the URL is the
only key (DESIGN §5). It is an HMAC of the task id (``tokens``), checked before anything is
read: a wrong token looks exactly like an unknown task (404, nothing written, no query).
A body that is a task result is stored as a ``CallbackEvent`` (the view's one write) and
answered 200 in milliseconds; a job applies it (``services.callbacks``), checking its
fields first. A body that is not a task result at all is answered 400 (and stored as
``invalid`` if its task exists).

Being the key, the token must not reach the logs either. The view answers every request
itself, whatever its method and whatever goes wrong (an unexpected exception is a JSON 500,
a database failure a 503), logs each refusal once with the token segment masked (valid or
not; the task id stays), and marks its replies as logged, so that Django's request logging
("Method Not Allowed: <path>", "Internal Server Error: <path>" and its error mail) does not
repeat the path. The lines other writers make of the URL (runserver's, a proxy's) are
masked by ``hidream_models.logging.MaskCallbackTokens``.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, transaction
from django.http import JsonResponse, UnreadablePostError
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from .conf import hidream_settings
from .logging import MASK, mask_callback_tokens
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
    """The headers to keep: secrets dropped, and the callback token masked wherever a proxy
    repeats the URL (``X-Original-URL``, ``X-Forwarded-Uri``, ``Referer``...)."""
    return {
        key: mask_callback_tokens(value)
        for key, value in request.headers.items()
        if key.lower() not in SECRET_HEADERS
    }


def _masked_path(request) -> str:
    """The request's path for a log line: the route ends in the token segment (with or
    without a slash), which is masked whatever it holds; the task id before it stays."""
    head = request.path.rstrip("/").rpartition("/")[0]
    return f"{head}/{MASK}/"


def _reply(request, status: int, message: str, *, log: bool = True) -> JsonResponse:
    """A JSON refusal, logged once (a warning, an error from 500 on) with the path masked."""
    if log:
        level = logging.ERROR if status >= 500 else logging.WARNING
        logger.log(
            level, "HiDream callback %s answered %s: %s", _masked_path(request), status, message
        )
    return JsonResponse({"ok": False, "error": message}, status=status)


@method_decorator([csrf_exempt, transaction.non_atomic_requests], name="dispatch")
class HiDreamCallbackView(View):
    """Receives HiDream's task-result callback for one task: checks it and stores it.

    A plain Django view (no session, no CSRF, no DRF request wrapping: HiDream is no browser
    and this is the hottest URL of the app); the body is read by hand so the size limit holds
    before anything is parsed. Applying the result is the ``apply_received_callbacks`` job's.
    """

    http_method_names = ["post", "options"]

    # Every local of this call and the ones below it (the token, the request and its path)
    # shows as stars in an error report of a logged exception (AdminEmailHandler).
    @method_decorator(sensitive_variables())
    def dispatch(self, request, *args, **kwargs):
        try:
            response = super().dispatch(request, *args, **kwargs)
        except UnreadablePostError:
            # The sender hung up while sending the body: nothing was stored.
            response = _reply(request, 400, _("The body could not be read."))
        except DatabaseError:
            # Answered here, not by Django's 500 page, whose log line and mail show the path.
            logger.exception(
                "HiDream callback %s answered 503: the database failed", _masked_path(request)
            )
            response = _reply(
                request,
                503,
                _("The callback could not be stored; please send it again later."),
                log=False,
            )
        except Exception:
            logger.exception("HiDream callback %s answered 500", _masked_path(request))
            response = _reply(
                request,
                500,
                _("The callback could not be processed; please send it again later."),
                log=False,
            )
        # Logged above if worth a line: Django's request logging would repeat the path.
        response._has_been_logged = True
        return response

    def http_method_not_allowed(self, request, *args, **kwargs):
        # JSON like every other answer of this URL, with the Allow header Django would set;
        # any method, unknown ones too (View.dispatch sends them all here).
        response = _reply(
            request,
            405,
            _("Method %(method)s not allowed; HiDream POSTs here.") % {"method": request.method},
        )
        response["Allow"] = ", ".join(self._allowed_methods())
        return response

    def post(self, request, task_id, token):
        if not is_valid_callback_token(task_id, token):
            return _reply(request, 404, _("Not found."))

        limit = hidream_settings.MAX_CALLBACK_BYTES
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _reply(request, 400, _("Invalid Content-Length header."))
        if declared > limit:
            return _reply(
                request,
                413,
                _("Body too large: %(n)s bytes; the limit is %(max)s.")
                % {"n": declared, "max": limit},
            )
        raw = request.read(limit + 1)
        if len(raw) > limit:
            return _reply(
                request, 413, _("Body too large: the limit is %(max)s bytes.") % {"max": limit}
            )

        received = {
            # Text any page can show and any database can store: bytes that are not UTF-8
            # (a surrogate's too) become U+FFFD, and so does NUL.
            "body": raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
            "headers": strip_nul(_clean_headers(request)),
            "remote_addr": request.META.get("REMOTE_ADDR") or None,
        }
        # Only that it is a task result at all, so HiDream hears at once about a body that is
        # not; its fields are checked by the job that applies it (an invalid one is kept and
        # marked so there: HiDream resending the same body would not mend it).
        # The text checked is the text stored, decoded as UTF-8 (JSON's encoding, RFC 8259):
        # bytes json.loads would read as UTF-16 or UTF-32 are refused here, not accepted now
        # and found unreadable by the job later.
        try:
            check_callback_body(raw.decode("utf-8"))  # a UnicodeDecodeError is a ValueError
        except BODY_ERRORS as exc:
            problem = describe(exc)
            store_callback(task_id, outcome=CallbackOutcome.INVALID, error=problem, **received)
            return _reply(request, 400, problem)

        event = store_callback(task_id, outcome=CallbackOutcome.RECEIVED, **received)
        if event is None:
            # A right token for a task deleted since: nothing to apply it to.
            return _reply(request, 404, _("Not found."))
        wake_callback_applier()
        # 200, not 202: HiDream counts only a 200 as delivered (API-REFERENCE §5).
        return JsonResponse({"ok": True, "outcome": CallbackOutcome.RECEIVED})
