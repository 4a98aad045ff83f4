"""An offline HiDream e-commerce API on loopback, for the demo and the integration tests.

It implements the project's HiDream API reference (API-REFERENCE.md) as written, including
the parts tagged [assumed]: the submit, results and template endpoints with HiDream's
envelope (business errors are HTTP 200 with a non-zero `code`), tasks that queue, process
and finish after `delay` seconds, real result pictures drawn from the submitted image, and
the `notify_url` callback with HiDream's delivery rule (5 s timeout, 3 attempts 1 s
apart). Only the standard library, requests and Pillow are used, so it runs without
Django. This module serves HTTP and runs tasks; request checks are in validation.py,
task records in state.py and the pictures in rendering.py.

Business `code`s used (HiDream's own are undocumented): 4001 invalid parameter,
4004 task not found; and with a non-200 HTTP status: 4000 body not a JSON object (400),
4010 missing or invalid token (401), 4040 unknown path (404), 4050 wrong method (405),
4130 body too large (413), 5000 simulator bug (500).
"""

import hmac
import ipaddress
import json
import logging
import math
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

from . import rendering
from .state import SubTask, Task, draw_result, is_finished, new_task, task_result
from .validation import URL_SCHEME, ParameterError, page_params, preview_width, validate_submission

logger = logging.getLogger("hidream_models.simulator")

SUBMIT_PATH = "/api-pub/ec/v3/image/model/async"
RESULTS_PATH = SUBMIT_PATH + "/results"
TEMPLATE_PATHS = {
    "/api-pub/ec/v3/template/model/human": rendering.HUMAN_TEMPLATES,
    "/api-pub/ec/v3/template/model/scene": rendering.SCENE_TEMPLATES,
}
RESULT_PREFIX, PREVIEW_PREFIX = "/simulator/results/", "/simulator/previews/"

CODE_OK, CODE_INVALID_PARAMETER, CODE_TASK_NOT_FOUND = 0, 4001, 4004
CODE_BAD_REQUEST, CODE_UNAUTHORIZED, CODE_NOT_FOUND = 4000, 4010, 4040
CODE_METHOD_NOT_ALLOWED, CODE_TOO_LARGE, CODE_INTERNAL = 4050, 4130, 5000

MAX_BODY_BYTES = 64 * 2**20  # a 4K PNG in base64 fits comfortably


def envelope(code: int, message: str, result=None) -> dict:
    return {"code": code, "message": message, "request_id": str(uuid.uuid4()), "result": result}


def _summary(value) -> str:
    """Stands in for a large field in `submissions`, so they stay small."""
    if isinstance(value, str) and URL_SCHEME.match(value):
        return f"<url {value[:200]}>"
    if isinstance(value, str):
        return f"<base64, {len(value)} chars>"
    return f"<{type(value).__name__}>"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _url_host(host: str) -> str:
    """The host part of `base_url`: result URLs must work for the clients that can reach us."""
    try:
        address = ipaddress.ip_address(host or "::")
    except ValueError:
        return host  # a name, e.g. localhost
    if address.is_unspecified:  # all interfaces (--allow-remote): name this machine
        return socket.gethostname()
    return f"[{host}]" if address.version == 6 else host


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not keep the process alive
    simulator: "HiDreamSimulator"


class _Server6(_Server):
    address_family = socket.AF_INET6


class HiDreamSimulator:
    """HiDream's model-image API on loopback; see the module docstring.

    Binds at construction (so `base_url` is known with port=0); `start()` serves in a
    daemon thread, `serve_forever()` in the caller's; `stop()` or the `with` block ends it.
    Tests steer it with `delay`, `send_callbacks` and `forced_statuses` and read
    `submissions` and `callback_attempts`; `reset()` clears state between tests.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "sim-token",  # noqa: S107 - a public default for a local fake
        delay: float = 2.0,
        *,
        allow_remote: bool = False,
    ):
        if not token:
            raise ValueError("token must not be empty")
        if not allow_remote and not _is_loopback(host):
            # The simulator serves anyone's uploads back and fetches any URL: keep it private.
            raise ValueError(
                f"refusing to listen on non-loopback host {host!r}; pass "
                "--allow-remote (allow_remote=True) if you really mean it"
            )
        self.delay = delay
        self.send_callbacks = True
        self.forced_statuses: list[int] | None = None
        self.submissions: list[dict] = []
        self.callback_attempts: list[tuple[str, int | str]] = []
        # HiDream's delivery rule (§5); attributes so a test may shorten them.
        self.callback_timeout, self.callback_retry_interval = 5.0, 1.0
        self.callback_max_attempts = 3
        self._token = token
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._sub_tasks: dict[str, tuple[Task, SubTask]] = {}
        self._timers: set[threading.Timer] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = self._stopped = False
        self._httpd = (_Server6 if ":" in host else _Server)((host, port), _Handler)
        self._httpd.simulator = self
        self.base_url = f"http://{_url_host(host)}:{self._httpd.server_address[1]}"

    def __repr__(self) -> str:
        return f"<HiDreamSimulator {self.base_url}>"  # never the token

    def __enter__(self) -> "HiDreamSimulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "HiDreamSimulator":
        with self._lock:
            if self._thread is None:
                self._serving = True
                self._thread = threading.Thread(
                    target=self.serve_forever, name="hidream-simulator", daemon=True
                )
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() or KeyboardInterrupt."""
        self._serving = True
        self._httpd.serve_forever(poll_interval=0.1)  # stop() waits up to one interval

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            timers = list(self._timers)
        self._stopping.set()  # ends callback retries early
        for timer in timers:
            timer.cancel()
        if self._serving:  # shutdown() would wait forever for a loop that never ran
            self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for timer in timers:
            if timer is not threading.current_thread():
                timer.join(timeout=1)  # daemon threads: a hung receiver cannot block exit

    def reset(self) -> None:
        """Forget all tasks, submissions and callback attempts; clear `forced_statuses`."""
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._tasks.clear()
            self._sub_tasks.clear()
            self.submissions.clear()
            self.callback_attempts.clear()
            self.forced_statuses = None

    def result_url(self, sub_task_id: str) -> str:
        return f"{self.base_url}{RESULT_PREFIX}{sub_task_id}.jpg"

    def preview_url(self, template_id: str) -> str:
        return f"{self.base_url}{PREVIEW_PREFIX}{template_id}.png"

    def check_token(self, header: str) -> str | None:
        """None if the Authorization header carries our token, else what is wrong."""
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return "missing token: send 'Authorization: Bearer <token>'"
        if not hmac.compare_digest(value.strip().encode(), self._token.encode()):
            return "invalid token"
        return None

    def submit(self, body: dict) -> dict:
        record = dict(body)
        if "image" in record:
            record["image"] = _summary(record["image"])
        if isinstance(record.get("mask"), str) and len(record["mask"]) > 200:
            record["mask"] = _summary(record["mask"])
        with self._lock:
            self.submissions.append(record)
        try:
            order = validate_submission(body)
        except ParameterError as exc:
            return envelope(CODE_INVALID_PARAMETER, str(exc))
        with self._lock:
            task = new_task(order, self.delay, list(self.forced_statuses or []))
            for sub in task.sub_tasks:
                self._sub_tasks[sub.sub_task_id] = (task, sub)
            self._tasks[task.task_id] = task
            timer = threading.Timer(task.delay, self._finish, args=(task.task_id,))
            timer.daemon = True
            self._timers.add(timer)
            timer.start()
        ids = [sub.sub_task_id for sub in task.sub_tasks]
        return envelope(CODE_OK, "请求成功", {"task_id": task.task_id, "sub_task_ids": ids})

    def results(self, task_id: str) -> dict:
        if not task_id:
            return envelope(CODE_INVALID_PARAMETER, "task_id: required")
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return envelope(CODE_TASK_NOT_FOUND, f"task not found: {task_id[:64]}")
            return envelope(CODE_OK, "Success", task_result(task, self.result_url))

    def templates(self, items: tuple[dict, ...], page_index: str, page_size: str) -> dict:
        try:
            index, size = page_params(page_index, page_size)
        except ParameterError as exc:
            return envelope(CODE_INVALID_PARAMETER, str(exc))
        page = items[(index - 1) * size : index * size]
        return envelope(
            CODE_OK,
            "Success",
            {
                "templates": [dict(item, show_image=self.preview_url(item["id"])) for item in page],
                "total_count": len(items),
                "total_page": math.ceil(len(items) / size),
            },
        )

    def result_jpeg(self, sub_task_id: str) -> bytes | None:
        """The result picture of a finished, successful sub-task (drawn once), else None."""
        with self._lock:
            task, sub = self._sub_tasks.get(sub_task_id, (None, None))
            if sub is None or not is_finished(task) or sub.final_status != 1:
                return None
            if sub.jpeg is not None:
                return sub.jpeg
        jpeg = draw_result(task, sub)  # outside the lock: drawing takes a while
        with self._lock:
            sub.jpeg = jpeg
        return jpeg

    def _finish(self, task_id: str) -> None:
        """Runs in the task's timer thread when the task is done: deliver the callback."""
        try:
            with self._lock:
                task = self._tasks.get(task_id)
                if task is None or not task.order.notify_url or not self.send_callbacks:
                    return
                payload = envelope(CODE_OK, "Success", task_result(task, self.result_url))
            self._deliver(task, payload)
        finally:
            with self._lock:
                self._timers.discard(threading.current_thread())

    def _deliver(self, task: Task, payload: dict) -> None:
        url, body = task.order.notify_url, json.dumps(payload, ensure_ascii=False).encode()
        for attempt in range(1, self.callback_max_attempts + 1):
            if self._stopping.is_set() or self._tasks.get(task.task_id) is not task:
                return  # stopped, or reset() forgot the task: its retries must not leak on
            try:
                response = requests.post(
                    url,
                    data=body,
                    timeout=self.callback_timeout,
                    headers={"Content-Type": "application/json"},
                    allow_redirects=False,
                )
                outcome: int | str = response.status_code
                response.close()
            except requests.RequestException as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            with self._lock:
                if self._tasks.get(task.task_id) is not task:
                    return
                self.callback_attempts.append((url, outcome))
            if outcome == 200:
                logger.info("callback delivered to %s (attempt %d)", url, attempt)
                return
            logger.warning(
                "callback attempt %d/%d to %s failed: %s",
                attempt,
                self.callback_max_attempts,
                url,
                outcome,
            )
            if attempt < self.callback_max_attempts and self._stopping.wait(
                self.callback_retry_interval
            ):
                return
        logger.error("callback to %s given up after %d attempts", url, self.callback_max_attempts)


class _Handler(BaseHTTPRequestHandler):
    """Routes requests to the simulator; only the /api-pub/ endpoints need the token."""

    server: _Server
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
                sub_task_id = url.path[len(RESULT_PREFIX) :].removesuffix(".jpg")
                self._send(200, sim.result_jpeg(sub_task_id), "image/jpeg")
            elif method == "GET" and url.path.startswith(PREVIEW_PREFIX):
                try:
                    width = preview_width(query.get("width"))
                except ParameterError as exc:
                    self._send(400, str(exc).encode(), "text/plain")
                    return
                template_id = url.path[len(PREVIEW_PREFIX) :].removesuffix(".png")
                png = rendering.render_preview(template_id, width)
                self._send(200, png, "image/png")
            else:
                self._send(404, None, "")
        except Exception:  # a simulator bug must show up as such, not as a dropped connection
            logger.exception("simulator error on %s %s", method, url.path)
            self._json(500, envelope(CODE_INTERNAL, "internal simulator error"))

    def _api(self, sim: HiDreamSimulator, method: str, path: str, query: dict) -> None:
        allowed = "POST" if path == SUBMIT_PATH else "GET"
        if path not in (SUBMIT_PATH, RESULTS_PATH, *TEMPLATE_PATHS):
            return self._json(404, envelope(CODE_NOT_FOUND, f"no such endpoint: {path[:100]}"))
        if method != allowed:
            return self._json(405, envelope(CODE_METHOD_NOT_ALLOWED, f"use {allowed}"))
        problem = sim.check_token(self.headers.get("Authorization", ""))
        if problem:
            return self._json(401, envelope(CODE_UNAUTHORIZED, problem))
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
        return self._json(200, sim.submit(body))

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
