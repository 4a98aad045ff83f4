"""Exceptions raised by the HiDream client and the services above it.

Every ``str()`` is written for shop staff: it says what happened and, where known, what HiDream
answered. None of them ever contains the API token.

``HiDreamError``
 ├── ``HiDreamValidationError``   the request was refused before anything was sent
 ├── ``HiDreamAPIError``          HiDream answered with a non-zero business ``code``
 ├── ``HiDreamHTTPError``         HiDream answered with an HTTP error status
 ├── ``HiDreamResponseError``     the reply was not the JSON envelope we expect
 ├── ``HiDreamTransportError``    no usable answer: connection refused, reset, DNS...
 │    └── ``HiDreamTimeoutError``     the answer did not come in time
 └── ``HiDreamDownloadError``     a result file could not be fetched or is not a valid image

Configuration problems raise Django's ``ImproperlyConfigured`` instead.
"""

from __future__ import annotations

from django.utils.translation import gettext as _


class HiDreamError(Exception):
    """Base class of everything this app raises about talking to HiDream."""

    #: Whether trying the same call again later may succeed (used by the retry logic).
    transient = False


class HiDreamValidationError(HiDreamError, ValueError):
    """The request breaks one of HiDream's documented rules; nothing was sent.

    ``errors`` maps field names to lists of messages, like a form's errors.
    """

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        text = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items())
        super().__init__(text)


class HiDreamAPIError(HiDreamError):
    """HiDream answered with a business error (``code != 0``)."""

    def __init__(self, code: int, message: str, request_id: str = ""):
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(code, message, request_id)

    def __str__(self) -> str:
        text = _("HiDream refused the request (code %(code)s): %(message)s") % {
            "code": self.code,
            "message": self.message or _("no message"),
        }
        if self.request_id:
            text += f" [request_id {self.request_id}]"
        return text


class HiDreamHTTPError(HiDreamError):
    """HiDream answered with an HTTP error status; 429 and 5xx are worth retrying."""

    def __init__(self, status: int, body_excerpt: str = "", retry_after: float | None = None):
        self.status = status
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after
        self.transient = status == 429 or status >= 500
        super().__init__(status, body_excerpt)

    def __str__(self) -> str:
        hint = {
            401: _("the API token was refused: check HIDREAM_API_TOKEN"),
            403: _("the API token may not use this endpoint"),
            404: _(
                "the endpoint was not found: check HIDREAM_BASE_URL and the HIDREAM_*_PATH settings"
            ),
            429: _("HiDream is throttling this account; it will be retried"),
        }.get(
            self.status,
            _("HiDream had a server error; it will be retried") if self.transient else "",
        )
        text = _("HiDream answered HTTP %(status)s") % {"status": self.status}
        if hint:
            text += f": {hint}"
        if self.body_excerpt:
            text += " " + _("(reply: %(reply)s)") % {"reply": self.body_excerpt}
        return text


class HiDreamResponseError(HiDreamError):
    """The reply could not be understood (not JSON, or not the documented envelope)."""

    transient = True


class HiDreamTransportError(HiDreamError):
    """No answer could be had: connection refused or reset, name not resolved, TLS failure."""

    transient = True


class HiDreamBusyError(HiDreamTransportError):
    """Every concurrent-request slot (``HIDREAM_MAX_CONCURRENT_REQUESTS``) stayed in use:
    the request was not sent. Try again later."""


class HiDreamTimeoutError(HiDreamTransportError):
    """The request went out but no answer came in time.

    ``request_sent`` tells whether HiDream may have received it (a read timeout): such a
    submit may have been accepted and billed, so it must not be resent silently.
    """

    def __init__(self, message: str, *, request_sent: bool):
        self.request_sent = request_sent
        super().__init__(message)


class HiDreamDownloadError(HiDreamError):
    """A result picture could not be downloaded or failed the image checks."""

    def __init__(self, message: str, *, transient: bool = False):
        self.transient = transient
        super().__init__(message)
