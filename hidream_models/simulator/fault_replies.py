"""The bad replies of the HiDream simulator's faults (see faults.py for when they happen).

Each function writes one faulty reply through the simulator's request handler:
dropped connections, HTTP errors, non-JSON pages, 429s and the result-picture faults.
Large or slow bodies are streamed, never built in memory, and a client that hangs up
midway only ends the reply. Nothing here imports Django.
"""

import json
import struct
import threading
import uuid
import zlib
from collections.abc import Callable
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

from .faults import CODE_THROTTLED, Faults, Throttled

CHUNK = 64 * 1024
SLOW_CHUNK = 2048
_HUNG_UP = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
ERROR_PAGE = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
GARBAGE_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>维护中</title></head>"
    "<body><p>系统维护中，请稍后再试 / under maintenance</p><script>var x = {</script>"
    "</body></html>"
)
EXPIRED_PAGE = "<html><body><h1>链接已失效 / this link has expired</h1></body></html>"


def _envelope(code: int, message: str) -> bytes:
    payload = {"code": code, "message": message, "request_id": str(uuid.uuid4()), "result": None}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _head(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()


def _reply(handler, status: int, body: bytes, content_type: str, **extra: str) -> None:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}
    _head(handler, status, headers)
    handler.wfile.write(body)


def drop(handler: BaseHTTPRequestHandler) -> None:
    """Write nothing: the server closes the socket once the handler returns."""
    handler.close_connection = True


def http_error(handler: BaseHTTPRequestHandler, faults: Faults) -> None:
    status = faults.fail_status
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    extra = {}
    if faults.fail_retry_after is not None:
        extra["Retry-After"] = str(faults.fail_retry_after)
    if faults.fail_body == "json":
        body, content_type = _envelope(status * 10, reason), "application/json; charset=utf-8"
    else:
        page = ERROR_PAGE.format(status=status, reason=reason)
        body, content_type = page.encode(), "text/html"
    _reply(handler, status, body, content_type, **extra)


def garbage(handler: BaseHTTPRequestHandler) -> None:
    _reply(handler, 200, GARBAGE_PAGE.encode("utf-8"), "text/html; charset=utf-8")


def throttled(handler: BaseHTTPRequestHandler, exc: Throttled) -> None:
    body = _envelope(CODE_THROTTLED, f"too many requests: {exc.reason}")
    retry = str(exc.retry_after)
    _reply(handler, 429, body, "application/json; charset=utf-8", **{"Retry-After": retry})


@lru_cache(maxsize=4)
def bomb_png(width: int, height: int) -> bytes:
    """A few hundred bytes of greyscale PNG whose header claims width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (min(width, 2**20) + 1) * 4, 9)  # a few rows; the rest missing
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def result_fault(
    handler: BaseHTTPRequestHandler,
    fault: str,
    faults: Faults,
    jpeg: Callable[[], bytes | None],
    stopping: threading.Event,
) -> None:
    """Serve `fault` instead of a result picture; `jpeg()` draws the real one if needed."""
    if fault == "expired":
        _reply(handler, 404, EXPIRED_PAGE.encode("utf-8"), "text/html; charset=utf-8")
    elif fault == "html":
        page = "<html><head><title>Result</title></head><body><p>Loading…</p></body></html>"
        _reply(handler, 200, page.encode("utf-8"), "text/html; charset=utf-8")
    elif fault == "bomb":
        _reply(handler, 200, bomb_png(*faults.bomb_size), "image/png")
    elif fault == "redirect_private":
        _reply(handler, 302, b"", "text/plain", Location=faults.redirect_location)
    else:  # oversize or slow: both stream the real picture
        picture = jpeg() or b""
        try:
            if fault == "oversize":
                _stream_padded(handler, picture, faults)
            else:
                _stream_slowly(handler, picture, faults, stopping)
        except _HUNG_UP:
            handler.close_connection = True  # the client gave up: that is its right


def _stream_head(handler, size: int, faults: Faults) -> None:
    headers = {"Content-Type": "image/jpeg"}
    if faults.result_content_length:
        headers["Content-Length"] = str(size)
    handler.close_connection = True  # without a length, the body ends with the connection
    _head(handler, 200, headers)


def _stream_padded(handler, picture: bytes, faults: Faults) -> None:
    """The JPEG, then zero bytes up to `oversize_bytes` (decoders ignore what follows EOI)."""
    total = max(faults.oversize_bytes, len(picture))
    _stream_head(handler, total, faults)
    handler.wfile.write(picture)
    left, zeros = total - len(picture), bytes(CHUNK)
    while left > 0:
        handler.wfile.write(zeros[: min(left, CHUNK)])
        left -= CHUNK


def _stream_slowly(handler, picture: bytes, faults: Faults, stopping: threading.Event) -> None:
    pieces = [picture[i : i + SLOW_CHUNK] for i in range(0, len(picture), SLOW_CHUNK)]
    pause = faults.slow_seconds / max(1, len(pieces) - 1)  # between the pieces
    _stream_head(handler, len(picture), faults)
    for number, piece in enumerate(pieces):
        if number and stopping.wait(pause):
            return  # the simulator stops
        handler.wfile.write(piece)
        handler.wfile.flush()
