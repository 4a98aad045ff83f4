"""An offline HiDream e-commerce API on loopback, for the demo and the integration tests.

It implements the project's HiDream API reference (API-REFERENCE.md) as written, including
the parts tagged [assumed]: the submit, results and template endpoints with HiDream's
envelope (business errors are HTTP 200 with a non-zero `code`), tasks that queue, process
and finish after `delay` seconds, real result pictures drawn from the submitted image, and
the `notify_url` callback with HiDream's delivery rule (5 s timeout, 3 attempts 1 s
apart). Only the standard library, requests and Pillow are used, so it runs without
Django. This module runs tasks; handler.py serves HTTP, validation.py checks requests,
state.py keeps task records, rendering.py draws the pictures and callbacks.py calls
``notify_url``. Tests can make it misbehave (latency, HTTP errors, throttling, lost
replies, callback and result-file faults, or all of them by seeded probability): see
faults.py for that API. ledger.py records every task it accepted (and so billed).

Business `code`s used (HiDream's own are undocumented): 4001 invalid parameter,
4004 task not found; and with a non-200 HTTP status: 4000 body not a JSON object (400),
4010 missing or invalid token (401), 4040 unknown path (404), 4050 wrong method (405),
4130 body too large (413), 5000 simulator bug (500); faults add 4290 throttled (429)
and `fail_status * 10` for JSON error bodies.
"""

import dataclasses
import hmac
import ipaddress
import json
import logging
import math
import socket
import threading

from . import callbacks
from .faults import FaultsMixin
from .handler import (
    CODE_INVALID_PARAMETER,
    CODE_OK,
    CODE_TASK_NOT_FOUND,
    PREVIEW_PREFIX,
    RESULT_PREFIX,
    Handler,
    Server,
    Server6,
    envelope,
)
from .ledger import Ledger
from .state import SubTask, Task, draw_result, is_finished, new_task, task_result
from .validation import URL_SCHEME, ParameterError, page_params, validate_submission

logger = logging.getLogger("hidream_models.simulator")


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


class HiDreamSimulator(FaultsMixin):
    """HiDream's model-image API on loopback; see the module docstring.

    Binds at construction (so `base_url` is known with port=0); `start()` serves in a
    daemon thread, `serve_forever()` in the caller's; `stop()` or the `with` block ends it.
    Tests steer it with `delay`, `send_callbacks`, `forced_statuses` and `faults` (see
    faults.py) and read `submissions`, `callback_attempts`, the fault counters and the
    `ledger` of billed tasks; `reset()` clears state between tests.
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
        self.ledger = Ledger()
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
        self._reset_faults()
        self._httpd = (Server6 if ":" in host else Server)((host, port), Handler)
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
        """Forget tasks, submissions and callback attempts; clear `forced_statuses`, faults
        and fault counters (`delay` and `send_callbacks` stay as they are)."""
        self._reset_faults()
        with self._lock:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            self._tasks.clear()
            self._sub_tasks.clear()
            self.submissions.clear()
            self.callback_attempts.clear()
            self.ledger.clear()
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
        if self._take("business_error_count", "submit"):
            return envelope(self.faults.business_error_code, self.faults.business_error_message)
        try:
            order = validate_submission(body)
        except ParameterError as exc:
            return envelope(CODE_INVALID_PARAMETER, str(exc))
        early = self.faults.callback_mode == "early"
        with self._lock:
            task = new_task(order, 0 if early else self.delay, list(self.forced_statuses or []))
            task.callback_plan = self._chaos_callbacks(task.task_id)
            self.ledger.billed(task, body)
            for sub in task.sub_tasks:
                self._sub_tasks[sub.sub_task_id] = (task, sub)
            self._tasks[task.task_id] = task
            if not early:
                timer = threading.Timer(task.delay, self._finish, args=(task.task_id,))
                timer.daemon = True
                self._timers.add(timer)
                timer.start()
        if early:  # done at once, and the callback arrives before this reply
            self._finish(task.task_id)
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

    def report(self, *, ledger: bool = True) -> dict:
        """The counters and the ledger (unless `ledger` is False) as JSON-ready data (the
        control endpoint's answer)."""
        with self._lock:
            counters = {
                "accepted_submits": self.accepted_submits,
                "throttled": self.throttled,
                "chaos_counts": dict(self.chaos_counts),
                "pending_tasks": len(self._timers),  # unfinished, or calling back
                "faults": dataclasses.asdict(self.faults),
            }
        if not ledger:
            return counters
        return {**counters, "ledger": self.ledger.entries(), "refused": self.ledger.refusals()}

    def write_report(self, path: str) -> None:
        """Write `report()` to the file `path` as JSON."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.report(), fh, indent=1)

    def serve_result(self, sub_task_id: str) -> bytes | None:
        """`result_jpeg`, recording the bytes served in the ledger."""
        jpeg = self.result_jpeg(sub_task_id)
        if jpeg is not None:
            with self._lock:
                task, _sub = self._sub_tasks.get(sub_task_id, (None, None))
            if task is not None:  # else reset() forgot it meanwhile
                self.ledger.served(task.task_id, sub_task_id, jpeg)
        return jpeg

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
            callbacks.send(self, task, payload)
        finally:
            with self._lock:
                self._timers.discard(threading.current_thread())
