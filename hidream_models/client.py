"""``HiDreamClient``: the only code that talks HTTP to HiDream's API.

One ``requests.Session`` per client, connect and read timeouts on every call, a versioned
User-Agent, and urllib3's ``Retry`` for quick in-process retries of blips. A submit (POST) is
only retried when it certainly did not reach HiDream (connection refused, or HTTP 429):
retrying a POST that may have been accepted could generate, and bill, the pictures twice.
Slower retries (minutes) are the background jobs' business, see ``services``.

Every reply is checked in this order: HTTP status, JSON, envelope, business ``code``.

A ``request_gate`` (a context manager factory) is entered around every HTTP request: the
services pass one that holds a concurrent-request slot (``services.limits``), so the plan's
limit covers submits, polls and template pages alike.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import requests
from django.utils.translation import gettext as _
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from . import __version__
from .conf import hidream_settings
from .exceptions import (
    HiDreamAPIError,
    HiDreamHTTPError,
    HiDreamResponseError,
    HiDreamTimeoutError,
    HiDreamTransportError,
)
from .logging import mask_callback_tokens
from .payloads import PayloadError, TaskResultPayload, loads_json, parse_task_result
from .rules import validate_model_image_request

logger = logging.getLogger(__name__)

USER_AGENT = f"hidream-models/{__version__} python-requests/{requests.__version__}"
TEMPLATE_PAGE_SIZE = 100  # HiDream's maximum
MAX_TEMPLATE_PAGES = 100  # a guard against a server that never stops paging
EXCERPT_CHARS = 300
#: String values longer than this are sent from the string itself, not from a JSON copy of it
INLINE_LIMIT = 64 * 1024
_BASE64_CHARS = re.compile(r"[A-Za-z0-9+/=]*")


#: Longest ``Retry-After`` a GET waits for inside one call; a longer one ends the call (the
#: job or the next poll comes back later), so no call outlives its slot's lease.
MAX_IN_CALL_RETRY_AFTER = 5.0


class HiDreamRetry(Retry):
    """urllib3 ``Retry`` that never repeats a POST.

    GETs are retried on connection errors, read errors, 429 and 5xx, waiting at most
    ``MAX_IN_CALL_RETRY_AFTER`` for a ``Retry-After``. A POST is only retried on connection
    errors raised before the request was sent, which urllib3 already treats as safe for every
    method: a 429 goes back to the submit job, which defers the task and claims it afresh,
    rather than send it again from a call the sweep may have given up on meanwhile.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method and method.upper() == "POST":
            return False
        return super().is_retry(method, status_code, has_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), MAX_IN_CALL_RETRY_AFTER)


@dataclass(frozen=True)
class SubmitResult:
    """What HiDream answered to a submit."""

    task_id: str
    sub_task_ids: tuple[str, ...]
    request_id: str


class HiDreamClient:
    """A client for HiDream's e-commerce model-image API.

    Arguments default to the ``HIDREAM_*`` settings; pass them to talk to another host (the
    simulator) or with another token. The token is read at first use, so building a client
    without one is fine until a call is made.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        http_retries: int = 2,
        request_gate: Callable[[], AbstractContextManager] | None = None,
    ) -> None:
        self._gate = request_gate or nullcontext
        self.base_url = (base_url or hidream_settings.BASE_URL).rstrip("/")
        self._token = token
        self.timeout = (
            connect_timeout or hidream_settings.CONNECT_TIMEOUT,
            read_timeout or hidream_settings.READ_TIMEOUT,
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        retry = HiDreamRetry(
            total=http_retries,
            connect=http_retries,
            read=http_retries,
            status=http_retries,
            backoff_factor=0.5,
            backoff_jitter=0.5,
            backoff_max=10,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"<HiDreamClient {self.base_url}>"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> HiDreamClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public calls -------------------------------------------------------------------

    def submit_model_image(
        self,
        *,
        image: str,
        template: dict[str, Any] | None = None,
        prompt: str | None = None,
        image_count: int = 1,
        mask: str | None = None,
        notify_url: str | None = None,
    ) -> SubmitResult:
        """Submit a model-image task; raises ``HiDreamValidationError`` before sending."""
        body: dict[str, Any] = {"image": image, "image_count": image_count}
        if template is not None:
            body["template"] = template
        if prompt is not None:
            body["prompt"] = prompt
        if mask:
            body["mask"] = mask
        if notify_url:
            body["notify_url"] = notify_url
        body = validate_model_image_request(body)
        envelope = self._request(
            "POST",
            hidream_settings.SUBMIT_PATH,
            data=JSONBody(body),
            headers={"Content-Type": "application/json"},
        )
        result = envelope.get("result")
        if (
            not isinstance(result, dict)
            or not isinstance(result.get("task_id"), str)
            or not result["task_id"]
            or not isinstance(result.get("sub_task_ids"), list)
            or not all(isinstance(item, str) for item in result["sub_task_ids"])
        ):
            raise HiDreamResponseError(
                _("HiDream accepted the task but its reply has no task_id/sub_task_ids: %(reply)s")
                % {"reply": _excerpt(self._scrub(str(result)))}
            )
        return SubmitResult(
            task_id=result["task_id"],
            sub_task_ids=tuple(result["sub_task_ids"]),
            request_id=self._scrub(str(envelope.get("request_id", ""))),
        )

    def get_model_image_result(self, task_id: str) -> TaskResultPayload:
        """Query a task's sub-task results (the polling path)."""
        envelope = self._request("GET", hidream_settings.RESULT_PATH, params={"task_id": task_id})
        try:
            payload = parse_task_result(envelope)
        except PayloadError as exc:
            raise HiDreamResponseError(
                _("HiDream's task result could not be read: %(error)s") % {"error": exc}
            ) from exc
        if not payload.task_id:
            payload = TaskResultPayload(task_id, payload.sub_task_results, payload.raw)
        return payload

    def list_templates(self, kind: str) -> list[dict[str, Any]]:
        """All templates of ``kind`` ("human" or "scene"), every page gathered."""
        paths = {
            "human": hidream_settings.HUMAN_TEMPLATES_PATH,
            "scene": hidream_settings.SCENE_TEMPLATES_PATH,
        }
        if kind not in paths:
            raise ValueError(f"kind must be 'human' or 'scene', not {kind!r}")
        templates: list[dict[str, Any]] = []
        page = 1
        while page <= MAX_TEMPLATE_PAGES:
            envelope = self._request(
                "GET", paths[kind], params={"page_index": page, "page_size": TEMPLATE_PAGE_SIZE}
            )
            result = envelope.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("templates"), list):
                raise HiDreamResponseError(
                    _("HiDream's %(kind)s template list has no 'templates' list: %(reply)s")
                    % {"kind": kind, "reply": _excerpt(self._scrub(str(result)))}
                )
            templates.extend(item for item in result["templates"] if isinstance(item, dict))
            total_pages = result.get("total_page")
            if not isinstance(total_pages, int) or page >= total_pages or not result["templates"]:
                break
            page += 1
        return templates

    # -- plumbing -----------------------------------------------------------------------

    def _token_header(self) -> str:
        token = self._token if self._token is not None else hidream_settings.require_token()
        return f"Bearer {token}"

    def _request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        headers = {**(headers or {}), "Authorization": self._token_header()}
        try:
            with self._gate():  # may raise HiDreamBusyError: then nothing was sent
                response = self.session.request(
                    method, url, headers=headers, timeout=self.timeout, **kwargs
                )
        except requests.ConnectTimeout as exc:
            raise HiDreamTimeoutError(
                _("Could not connect to %(url)s within %(s)s s.")
                % {"url": self.base_url, "s": self.timeout[0]},
                request_sent=False,
            ) from exc
        except requests.ReadTimeout as exc:
            raise HiDreamTimeoutError(
                _("%(url)s did not answer within %(s)s s.")
                % {"url": self.base_url, "s": self.timeout[1]},
                request_sent=True,
            ) from exc
        except requests.ConnectionError as exc:
            if method == "POST" and not _never_sent(exc):
                # The connection broke after the request went out: HiDream may have it.
                raise HiDreamTimeoutError(
                    _("The connection to %(url)s broke before HiDream answered.")
                    % {"url": self.base_url},
                    request_sent=True,
                ) from exc
            raise HiDreamTransportError(
                _("Could not reach %(url)s: %(reason)s")
                % {"url": self.base_url, "reason": _reason(exc)}
            ) from exc
        except requests.RequestException as exc:
            if method == "POST":
                # The reply broke off (a cut chunked body, say): HiDream had the request.
                raise HiDreamTimeoutError(
                    _("The answer of %(url)s broke off: %(reason)s")
                    % {"url": self.base_url, "reason": _reason(exc)},
                    request_sent=True,
                ) from exc
            raise HiDreamTransportError(
                _("Request to %(url)s failed: %(reason)s")
                % {"url": self.base_url, "reason": _reason(exc)}
            ) from exc
        return self._parse(response)

    def _parse(self, response: requests.Response) -> dict[str, Any]:
        text = response.text
        if response.status_code >= 400:
            raise HiDreamHTTPError(
                response.status_code,
                _excerpt(self._scrub(text)),
                retry_after=_retry_after(response.headers.get("Retry-After")),
            )
        try:
            envelope = loads_json(response.content)
        except ValueError:
            raise HiDreamResponseError(
                _(
                    "HiDream answered HTTP %(status)s with something that is not JSON "
                    "(%(type)s): %(reply)s"
                )
                % {
                    "status": response.status_code,
                    "type": response.headers.get("Content-Type", "no content type"),
                    "reply": _excerpt(self._scrub(text)),
                }
            ) from None
        if not isinstance(envelope, dict) or "code" not in envelope:
            raise HiDreamResponseError(
                _("HiDream's reply is not the expected {code, message, result} envelope: %(reply)s")
                % {"reply": _excerpt(self._scrub(text))}
            )
        code = envelope["code"]
        if not isinstance(code, int) or isinstance(code, bool):
            raise HiDreamResponseError(
                _("HiDream's reply has a non-integer code: %(code)s")
                % {"code": self._scrub(repr(code))}
            )
        if code != 0:
            raise HiDreamAPIError(
                code,
                self._scrub(str(envelope.get("message", ""))),
                self._scrub(str(envelope.get("request_id", ""))),
            )
        return envelope

    def _scrub(self, text: str) -> str:
        """Mask the token (as configured and as sent, i.e. stripped) in text meant for people,
        and the callback token of any notify_url HiDream echoes back."""
        token = self._token if self._token is not None else hidream_settings.API_TOKEN
        for variant in {token, token.strip()}:
            if variant:
                text = text.replace(variant, "***")
        return mask_callback_tokens(text)


class JSONBody:
    """A JSON request body read from the values themselves: no full copy of a photo.

    ``requests.post(json=body)`` makes a JSON string of the body, then its bytes: two more
    copies of a base64 photo of megabytes. Here the JSON is made with a marker in place of
    each long base64 value (base64 needs no escaping in JSON) and sent in pieces: the JSON
    around the values, and slices of the values encoded as they are read. It is a file for
    ``requests`` and urllib3: it has a length (sent as Content-Length, not chunked) and
    ``tell``/``seek``, so urllib3 rewinds it when it retries a 429.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        long_values = {}
        short = dict(data)
        for key, value in data.items():
            if (
                isinstance(value, str)
                and len(value) > INLINE_LIMIT
                and _BASE64_CHARS.fullmatch(value)
            ):
                marker = f'"hidream-{secrets.token_hex(16)}"'  # random: only ours can match
                long_values[marker] = value
                short[key] = marker[1:-1]
        # As requests' json=: ASCII only (escapes), and no NaN.
        rest = json.dumps(short, allow_nan=False)
        self._pieces: list[bytes | str] = []
        for marker, value in long_values.items():  # in the order json.dumps wrote them
            before, rest = rest.split(marker, 1)
            self._pieces.extend((before.encode("ascii"), '"', value, '"'))
        self._pieces.append(rest.encode("ascii"))
        self._length = sum(len(piece) for piece in self._pieces)  # ASCII: 1 byte a character
        self._position = 0

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = min(max(0, base + offset), self._length)
        return self._position

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes from the current position (all the rest for -1)."""
        end = self._length if size is None or size < 0 else min(self._length, self._position + size)
        out = []
        start = 0
        for piece in self._pieces:
            stop = start + len(piece)
            if stop > self._position and start < end:
                lo, hi = max(self._position, start) - start, min(end, stop) - start
                chunk = piece[lo:hi]
                out.append(chunk.encode("ascii") if isinstance(chunk, str) else chunk)
            start = stop
        self._position = end
        return b"".join(out)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # HTTP-date form: rare for APIs; fall back to our own backoff


def _never_sent(exc: BaseException) -> bool:
    """True when the connection failed before any byte of the request left."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, NewConnectionError | NameResolutionError | ConnectionRefusedError):
            return True
        linked = (getattr(current, "reason", None), current.__cause__, current.__context__)
        pending.extend(x for x in (*linked, *current.args) if isinstance(x, BaseException))
    return False


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return _excerpt(text) if text else type(exc).__name__
