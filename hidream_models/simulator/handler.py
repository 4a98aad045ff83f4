"""The HTTP side of the HiDream simulator: paths, HiDream's envelope and the request handler.

``Handler`` routes each request to the ``HiDreamSimulator`` it serves (server.py): the
/api-pub/ endpoints need the token and go through the faults of faults.py; result
pictures and template previews do not need it, like files on a CDN. Business codes are
listed in server.py's docstring. Two endpoints that HiDream does not have steer the
simulator from another process (``make test-chaos``), with the same token:
``GET /simulator/control/report`` answers ``sim.report()`` (the ledger and fault counters;
``?ledger=0`` the counters only),
``POST /simulator/control/faults`` sets fault fields from a JSON object (400 naming a wrong
one) and answers them all. Nothing here imports Django.
"""

import dataclasses
import functools
import json
import logging
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from . import fault_replies as replies
from . import rendering
from .faults import Faults, Throttled
from .validation import ParameterError, preview_width

if TYPE_CHECKING:
    from .server import HiDreamSimulator

logger = logging.getLogger("hidream_models.simulator")

SUBMIT_PATH = "/api-pub/ec/v3/image/model/async"
RESULTS_PATH = SUBMIT_PATH + "/results"
TEMPLATE_PATHS = {
    "/api-pub/ec/v3/template/model/human": rendering.HUMAN_TEMPLATES,
    "/api-pub/ec/v3/template/model/scene": rendering.SCENE_TEMPLATES,
}
PATH_KIND = {SUBMIT_PATH: "submit", RESULTS_PATH: "results"} | dict.fromkeys(
    TEMPLATE_PATHS, "templates"
)
RESULT_PREFIX, PREVIEW_PREFIX = "/simulator/results/", "/simulator/previews/"
CONTROL_REPORT, CONTROL_FAULTS = "/simulator/control/report", "/simulator/control/faults"

CODE_OK, CODE_INVALID_PARAMETER, CODE_TASK_NOT_FOUND = 0, 4001, 4004
CODE_BAD_REQUEST, CODE_UNAUTHORIZED, CODE_NOT_FOUND = 4000, 4010, 4040
CODE_METHOD_NOT_ALLOWED, CODE_TOO_LARGE, CODE_INTERNAL = 4050, 4130, 5000

MAX_BODY_BYTES = 64 * 2**20  # a 4K PNG in base64 fits comfortably


def envelope(code: int, message: str, result=None) -> dict:
    return {"code": code, "message": message, "request_id": str(uuid.uuid4()), "result": result}


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not keep the process alive
    simulator: "HiDreamSimulator"


class Server6(Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the simulator; only the /api-pub/ endpoints need the token."""

    server: Server
    server_version, sys_version = "HiDreamSimulator/1.0", ""

    def log_message(self, fmt, *args) -> None:  # to the logger, not stderr
        logger.debug("%s %s", self.address_string(), fmt % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        sim = self.server.simulator
        try:
            if url.path.startswith("/api-pub/"):
                self._api(sim, method, url.path, query)
            elif method == "GET" and url.path.startswith(RESULT_PREFIX):
                sim._pause(sim.faults.result_latency)
                sub_task_id = url.path[len(RESULT_PREFIX) :].removesuffix(".jpg")
                fault = sim._result_fault(sub_task_id)
                if fault:
                    draw = functools.partial(sim.result_jpeg, sub_task_id)
                    replies.result_fault(self, fault, sim.faults, draw, sim._stopping)
                else:
                    self._send(200, sim.serve_result(sub_task_id), "image/jpeg")
            elif method == "GET" and url.path.startswith(PREVIEW_PREFIX):
                sim._pause(sim.faults.result_latency)
                try:
                    width = preview_width(query.get("width"))
                except ParameterError as exc:
                    self._send(400, str(exc).encode(), "text/plain")
                    return
                template_id = url.path[len(PREVIEW_PREFIX) :].removesuffix(".png")
                png = rendering.render_preview(template_id, width)
                self._send(200, png, "image/png")
            elif url.path in (CONTROL_REPORT, CONTROL_FAULTS):
                self._control(sim, method, url.path, query)
            else:
                self._send(404, None, "")
        except (BrokenPipeError, ConnectionResetError):  # the client hung up (or was killed)
            logger.info("client hung up during %s %s", method, url.path)
            self.close_connection = True
        except Exception:  # a simulator bug must show up as such, not as a dropped connection
            logger.exception("simulator error on %s %s", method, url.path)
            self._json(500, envelope(CODE_INTERNAL, "internal simulator error"))

    def _api(self, sim: "HiDreamSimulator", method: str, path: str, query: dict) -> None:
        allowed = "POST" if path == SUBMIT_PATH else "GET"
        if path not in (SUBMIT_PATH, RESULTS_PATH, *TEMPLATE_PATHS):
            return self._json(404, envelope(CODE_NOT_FOUND, f"no such endpoint: {path[:100]}"))
        if method != allowed:
            return self._json(405, envelope(CODE_METHOD_NOT_ALLOWED, f"use {allowed}"))
        self._arrived = time.monotonic()
        too_many = sim._enter_api()  # in flight from arrival until the reply goes out
        self._api_sim = sim
        try:
            self._faulty_api(sim, PATH_KIND[path], path, query, too_many)
        finally:
            self._leave_api()

    def _leave_api(self) -> None:
        sim, self._api_sim = getattr(self, "_api_sim", None), None
        if sim is not None:
            sim._leave_api()

    def end_headers(self) -> None:
        # Leave *before* the reply reaches the client: a client that sends its next request
        # as soon as it has this answer must not find this one still counted (as HiDream's
        # own accounting would not).
        self._leave_api()
        super().end_headers()

    def _faulty_api(
        self, sim: "HiDreamSimulator", kind: str, path: str, query: dict, too_many: bool
    ) -> None:
        """An API request with the faults of faults.py, in the order documented there."""
        sim._pause(sim.faults.latency)
        if sim._take("drop_before_accept", kind, "drop_kind"):
            self._drain()
            return replies.drop(self)
        if sim._take("fail_count", kind, "fail_kind"):
            self._drain()
            return replies.http_error(self, sim.faults)
        if sim._take("garbage_count", kind, "garbage_kind"):
            self._drain()
            return replies.garbage(self)
        problem = sim.check_token(self.headers.get("Authorization", ""))
        if problem:
            return self._json(401, envelope(CODE_UNAUTHORIZED, problem))
        chaos = sim._chaos_request(kind)
        gateway_timeout = chaos == ("server_error", 504) and kind == "submit"
        if chaos and chaos[0] == "server_error" and not gateway_timeout:
            self._refused(sim, kind, self._drain(), f"HTTP {chaos[1]}")
            body = "json" if chaos[1] == 502 else "html"  # a gateway's page, or HiDream's own
            return replies.http_error(self, Faults(fail_status=chaos[1], fail_body=body))
        if chaos and chaos[0] == "throttle":
            self._refused(sim, kind, self._drain(), "HTTP 429")
            return replies.throttled(self, Throttled(1, "chaos"))
        if chaos and chaos[0] == "drop" and kind != "submit":  # a submit is handled first
            self._drain()
            sim._pause(sim.faults.drop_hang_seconds if chaos[1] else 0)
            return replies.drop(self)
        if too_many:
            self._refused(sim, kind, self._drain(), "HTTP 429")
            return self._throttled(sim, kind, Throttled(1, "concurrent requests"))
        if path == RESULTS_PATH:
            return self._json(200, sim.results(query.get("task_id", "")))
        if path in TEMPLATE_PATHS:
            return self._json(
                200,
                sim.templates(
                    TEMPLATE_PATHS[path], query.get("page_index", "1"), query.get("page_size", "20")
                ),
            )
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length > MAX_BODY_BYTES:
            return self._json(413, envelope(CODE_TOO_LARGE, "request body too large"))
        try:
            body = json.loads(self.rfile.read(length)) if length > 0 else None
        except ValueError:  # includes UnicodeDecodeError
            body = None
        if not isinstance(body, dict):
            return self._json(400, envelope(CODE_BAD_REQUEST, "the body must be a JSON object"))
        try:
            ticket = sim._reserve_pictures(body)
        except Throttled as exc:
            sim.ledger.refused(body.get("notify_url"), "HTTP 429")
            return self._throttled(sim, kind, exc)
        payload = sim.submit(body)
        accepted = payload["code"] == CODE_OK
        sim._settle_submit(ticket, accepted=accepted)
        task_id = payload["result"]["task_id"] if accepted else None
        if not accepted:
            sim.ledger.refused(body.get("notify_url"), f"code {payload['code']}")
        if gateway_timeout:  # HiDream took the task; the gateway in front gave up waiting
            sim.ledger.replied(task_id, "504", time.monotonic() - self._arrived)
            return replies.http_error(self, Faults(fail_status=504))
        if chaos or sim._take("drop_after_accept", kind):
            hang = bool(chaos and chaos[1])
            sim._pause(sim.faults.drop_hang_seconds if hang else 0)
            elapsed = time.monotonic() - self._arrived
            sim.ledger.replied(task_id, "hung up" if hang else "dropped", elapsed)
            return replies.drop(self)  # the task exists, but its reply is lost
        try:
            self._json(200, payload)
        except OSError:  # the caller hung up (or its worker was killed): the reply is lost
            sim.ledger.replied(task_id, "failed", time.monotonic() - self._arrived)
            self.close_connection = True
            return None
        sim.ledger.replied(task_id, "sent", time.monotonic() - self._arrived)
        return None

    def _control(self, sim: "HiDreamSimulator", method: str, path: str, query: dict) -> None:
        """The simulator's own endpoints (see the module doc), behind the same token."""
        problem = sim.check_token(self.headers.get("Authorization", ""))
        if problem:
            return self._json(401, envelope(CODE_UNAUTHORIZED, problem))
        allowed = "GET" if path == CONTROL_REPORT else "POST"
        if method != allowed:
            return self._json(405, envelope(CODE_METHOD_NOT_ALLOWED, f"use {allowed}"))
        if path == CONTROL_REPORT:
            ledger = query.get("ledger") != "0"
            return self._json(200, envelope(CODE_OK, "Success", sim.report(ledger=ledger)))
        try:
            length = int(self.headers.get("Content-Length") or 0)
            changes = json.loads(self.rfile.read(length)) if 0 < length <= MAX_BODY_BYTES else None
        except ValueError:
            changes = None
        if not isinstance(changes, dict):
            return self._json(400, envelope(CODE_BAD_REQUEST, "the body must be a JSON object"))
        if isinstance(changes.get("bomb_size"), list):
            changes["bomb_size"] = tuple(changes["bomb_size"])
        try:
            faults = sim.set_faults(**changes)
        except (TypeError, ValueError) as exc:
            return self._json(400, envelope(CODE_INVALID_PARAMETER, str(exc)))
        return self._json(200, envelope(CODE_OK, "Success", dataclasses.asdict(faults)))

    def _throttled(self, sim: "HiDreamSimulator", kind: str, exc: Throttled) -> None:
        sim._note_throttled(kind, exc.reason)
        replies.throttled(self, exc)

    def _drain(self) -> bytes:
        """Read a POST's body before a faulty reply, so closing the socket cannot reset it."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return b""
        if self.command == "POST" and 0 < length <= MAX_BODY_BYTES:
            return self.rfile.read(length)
        return b""

    @staticmethod
    def _refused(sim: "HiDreamSimulator", kind: str, data: bytes, answer: str) -> None:
        """Record in the ledger a submit answered `answer` without creating a task."""
        if kind != "submit":
            return
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        notify_url = body.get("notify_url") if isinstance(body, dict) else None
        sim.ledger.refused(notify_url if isinstance(notify_url, str) else None, answer)

    def _json(self, status: int, payload: dict) -> None:
        self._send(
            status,
            json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            "application/json; charset=utf-8",
        )

    def _send(self, status: int, data: bytes | None, content_type: str) -> None:
        if data is None:
            status, data, content_type = 404, b"not found", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", "Bearer")
        self.end_headers()
        self.wfile.write(data)
