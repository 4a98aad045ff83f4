"""A logging filter that keeps callback tokens out of log records and error mails.

The token in ``/hidream/callback/<task uuid>/<token>/`` is the only key to a task's callback
URL (DESIGN §5), so it must not sit in logs that more people read than hold the key. The
callback view masks it in its own lines and answers every request itself, so Django's
request logging never repeats the path. Other writers still see the path: ``runserver``'s
request lines (logger ``django.server``), Django's ``Not Found: <path>`` for a URL that only
looks like a callback, a ``DisallowedHost`` report, a proxy or middleware of the project.
``MaskCallbackTokens`` rewrites any record that passes through it, on a handler or a logger::

    LOGGING = {
        ...
        "filters": {"mask_callback_tokens": {"()": "hidream_models.logging.MaskCallbackTokens"}},
        "handlers": {"console": {..., "filters": ["mask_callback_tokens"]}},
    }

Whatever the segment after the task id holds, a valid token or not, it becomes ``***``;
the task id stays, so a line still says which task it was about.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

# ".../callback/<task uuid>/<token>": the app may be included under any prefix, the path
# may end without its slash, a raw request line may spell a slash as %2F (Django decodes it
# and routes the request all the same), slashes may be doubled, and a log may quote or escape
# the path. The token
# segment runs to the next slash, query, fragment, whitespace or quote.
_UUID = r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}"
_SLASH = r"(?:/|%2f)+"  # doubled slashes route the same (a base URL ending in "/")
_CALLBACK_PATH = re.compile(
    rf"(?P<head>{_SLASH}callback{_SLASH}{_UUID}{_SLASH})(?P<token>[^/?#\s\"'<>]+)",
    re.IGNORECASE,
)


def mask_callback_tokens(text: str) -> str:
    """``text`` with the token segment of every callback path in it replaced by ``***``."""
    return _CALLBACK_PATH.sub(rf"\g<head>{MASK}", text)


def _mask_value(value: Any) -> Any:
    """A string masked; anything else as it is (its text is checked in the message)."""
    return mask_callback_tokens(value) if isinstance(value, str) else value


def _masked_mapping(args: Mapping) -> Mapping:
    """Mapping arguments (``"%(path)s"``) masked, in a copy of the same class: gunicorn's
    access log passes its atoms in a dict that answers "-" for any atom it lacks."""
    changed = {
        key: _mask_value(value)
        for key, value in args.items()
        if isinstance(value, str) and _mask_value(value) != value
    }
    if not changed:
        return args
    try:
        copied = copy.copy(args)
        for key, value in changed.items():
            copied[key] = value
    except Exception:
        copied = {**args, **changed}
    return copied


def _masked_request(request: Any) -> Any:
    """A copy of the request whose path and META show no token (Django's error mails and
    Sentry-like handlers read ``record.request``); the request itself is left untouched,
    as it may still be being answered. Anything else (runserver's socket) as it is."""
    from django.http import HttpRequest

    if not isinstance(request, HttpRequest):
        return request
    path = getattr(request, "path", "")
    if mask_callback_tokens(path) == path and not any(
        isinstance(value, str) and mask_callback_tokens(value) != value
        for value in request.META.values()
    ):
        return request
    masked = copy.copy(request)
    masked.path = mask_callback_tokens(request.path)
    masked.path_info = mask_callback_tokens(request.path_info)
    masked.META = {key: _mask_value(value) for key, value in request.META.items()}
    masked.__dict__.pop("headers", None)  # cached from the old META: rebuilt from the new
    masked.resolver_match = None  # its kwargs hold the token
    return masked


class MaskCallbackTokens(logging.Filter):
    """Rewrites every record it sees so that no callback token is left in it: the message
    and its arguments, a formatted traceback and stack, and ``record.request``. Lets every
    record through (it masks, it does not drop).

    A traceback is formatted here, masked, and kept as ``exc_text``, which formatters use
    instead of formatting ``exc_info`` again. Handlers that read ``exc_info`` themselves
    (``AdminEmailHandler``) still see the exception's own message: the callback view logs
    none that holds its URL.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._mask(record)
        except Exception:
            # Never let through what could not be masked, nor lose that something was
            # logged: the level, logger and place stay, the text goes.
            record.msg, record.args = "(message withheld: it could not be masked)", ()
            record.exc_info = record.exc_text = record.stack_info = None
            if hasattr(record, "request"):
                record.request = None
        return True

    def _mask(self, record: logging.LogRecord) -> None:
        record.msg = _mask_value(record.msg)
        if isinstance(record.args, Mapping):
            record.args = _masked_mapping(record.args)
        elif isinstance(record.args, tuple):
            record.args = tuple(_mask_value(value) for value in record.args)
        try:
            message = record.getMessage()
        except Exception:
            message = None  # a broken format: logging reports it when the record is emitted
        if message is not None and mask_callback_tokens(message) != message:
            # The path was in an object's text (a request passed for "%s") or split across
            # arguments ("%s%s" % (head, token)): keep the masked text, not the arguments.
            record.msg, record.args = mask_callback_tokens(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_callback_tokens(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_callback_tokens(record.stack_info)
        if hasattr(record, "request"):
            record.request = _masked_request(record.request)
