"""Fault injection for the HiDream simulator: how a test makes HiDream misbehave.

Everything is off by default, so a simulator nobody configures behaves exactly as
without this module. Faults are fields of ``sim.faults`` (a ``Faults`` dataclass);
change them with the thread-safe ``sim.set_faults(**fields)`` (validated, applied
under the simulator's lock) or the helpers below. Plain assignment
(``sim.faults.latency = 0.5``) works too but is not validated. ``sim.reset()`` puts
every fault and counter back to its default.

"API requests" are the known endpoints with the right method; their *kind* is
``"submit"``, ``"results"`` or ``"templates"``. Unknown paths, wrong methods,
result pictures and template previews are never faulted, except by ``result_latency``
and ``result_fault``. Per API request, in this order:

1. ``latency`` s pass (``result_latency`` for result pictures and previews).
2. ``drop_before_accept``: the next N API requests (of ``drop_kind``, or any) are read
   (a submit's body too) and the socket is closed without a reply. A dropped submit
   creates no task and is not recorded in ``submissions``.
3. ``fail_count``: the next N API requests (of ``fail_kind``, or any) answer
   ``fail_status`` with an nginx-like HTML page (``fail_body="html"``) or HiDream's
   envelope with ``code = fail_status * 10`` (``"json"``); ``Retry-After:
   fail_retry_after`` if set.
4. ``garbage_count``: the next N API requests (of ``garbage_kind``, or any) answer 200
   with a ``text/html`` page that is not JSON.
5. The token check (401), as without faults.
6. ``max_concurrent``: a request arriving while that many API requests are already in
   flight (counted from arrival to reply, latency included) gets 429, ``Retry-After: 1``.
7. ``throttle_images``: a submit whose ``image_count`` would bring the pictures of the
   accepted submits of the last ``throttle_window`` s above the limit gets 429 with
   ``Retry-After`` = whole seconds (>= 1) until enough of them leave the window.
   429s carry the envelope with code 4290 and count in ``sim.throttled``.
8. ``business_error_count``: the next N submits answer HTTP 200 with
   ``business_error_code`` / ``business_error_message`` (default 3005 "余额不足 /
   insufficient balance"); recorded in ``submissions``, no task.
9. ``drop_after_accept``: the next N submits are handled as usual (a valid one creates
   its task, which finishes and calls back) and then the socket is closed without the
   reply: HiDream accepted the task but its answer was lost.

Callbacks (``callback_mode``; ``send_callbacks=False`` still sends nothing):
``"normal"``; ``"lost"`` never sent; ``"duplicate"`` the whole delivery (with its
retries) runs ``callback_repeat`` times in a row; ``"out_of_order"`` after the final
callback an older snapshot (every sub-task ``task_status`` 2, no image) is delivered;
``"early"`` the task finishes at once and its callback is delivered *before* the
submit's reply is sent; ``"concurrent_duplicates"`` the final callback is delivered
``callback_repeat`` times from parallel threads.

Result pictures (``result_fault``), for successful finished sub-tasks whose index
(1-based, per task) is <= ``result_fault_count`` (None: all): ``"expired"`` 404
(with ``expire_after_first``, only from the second fetch of a picture on);
``"html"`` 200 text/html; ``"oversize"`` the JPEG followed by zero bytes up to
``oversize_bytes`` (default 40 MiB), streamed; ``"bomb"`` a tiny PNG whose header
declares ``bomb_size`` (30000x30000), which Pillow refuses as a decompression bomb;
``"slow"`` the JPEG in small chunks spread over ``slow_seconds``; ``"redirect_private"``
302 to ``redirect_location`` (http://10.0.0.1/x.jpg), which the simulator never fetches.
``result_content_length=False`` sends oversize and slow replies without Content-Length.

Helpers: ``fail_next(n=1, status=503, *, body="html", kind=None, retry_after=None)``,
``business_error_next(n=1, code=3005, message=...)``, ``drop_next(n=1, *,
after_accept=False, kind=None)``, ``garbage_next(n=1, *, kind=None)``,
``throttle(images=None, *, window=60.0, concurrent=None)``. Counters, reset by
``reset()``: ``throttled`` (429s sent), ``accepted_submits`` (submits answered code 0,
lost replies included), ``max_concurrency_seen`` (most API requests in flight at once,
throttled ones included), ``fault_events`` (list of ``(fault, kind or id)``).

Chaos (seeded faults by probability, for ``make test-chaos``): the faults above are counted
("the next N"); these instead strike each request with a probability, drawn from
``random.Random(chaos_seed)`` under the simulator's lock, so the sequence of draws is fixed
by the seed (which request gets which draw follows their arrival order). After the token
check, one draw per API request picks at most one of: ``server_error_rate`` an HTTP 500, 502,
503 or 504 (HTML or JSON body; nothing is created, except that a submit answered 504 is
handled first, as a gateway gives up on a HiDream that had it), ``throttle_rate`` a 429 with
``Retry-After: 1``, ``drop_rate`` the connection closed without a reply (a submit is handled
first: its task is created, billed and calls back, only the answer is lost). The three rates
add up to at most 1. A dropped connection hangs first for ``drop_hang_seconds`` (10) with
probability ``drop_hang_rate``, as a lost packet does: the caller's read timeout fires, and a
submit's callback (after ``delay``) may reach it before. Each accepted submit then draws its
callback's fate: ``callback_lost_rate`` never sent; otherwise ``callback_duplicate_rate``
delivered twice at once (from parallel threads) and, independently,
``callback_reorder_rate`` followed by an older "still processing" snapshot. A task's plan
overrides ``callback_mode``. Counts of what was injected are in ``chaos_counts``; the
``ledger`` (ledger.py) records every billed task.
"""

import math
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, fields, replace

from .state import SubTask, Task, is_finished

PATH_KINDS = ("submit", "results", "templates")
CALLBACK_MODES = ("normal", "lost", "duplicate", "out_of_order", "early", "concurrent_duplicates")
RESULT_FAULTS = ("expired", "html", "oversize", "bomb", "slow", "redirect_private")
ERROR_BODIES = ("html", "json")
CODE_THROTTLED = 4290
CHAOS_STATUSES = (500, 502, 503, 504)
#: The rates of issue #14's chaos run (``--chaos``): 10 % 5xx, 5 % 429, 5 % lost replies
#: (half of them silent until the caller's read timeout), 20 % lost, 10 % duplicated and 10 %
#: reordered callbacks.
CHAOS_RATES = {
    "server_error_rate": 0.10,
    "throttle_rate": 0.05,
    "drop_rate": 0.05,
    "drop_hang_rate": 0.5,  # half the lost replies are silence, not a closed socket
    "callback_lost_rate": 0.20,
    "callback_duplicate_rate": 0.10,
    "callback_reorder_rate": 0.10,
}
BALANCE_CODE, BALANCE_MESSAGE = 3005, "余额不足 / insufficient balance"


@dataclass
class Faults:
    """What the simulator does wrong; every default means "nothing". See the module doc."""

    latency: float = 0.0
    result_latency: float = 0.0
    drop_before_accept: int = 0
    drop_kind: str | None = None
    drop_after_accept: int = 0
    fail_count: int = 0
    fail_status: int = 503
    fail_body: str = "html"
    fail_kind: str | None = None
    fail_retry_after: int | None = None
    garbage_count: int = 0
    garbage_kind: str | None = None
    max_concurrent: int | None = None
    throttle_images: int | None = None
    throttle_window: float = 60.0
    business_error_count: int = 0
    business_error_code: int = BALANCE_CODE
    business_error_message: str = BALANCE_MESSAGE
    callback_mode: str = "normal"
    callback_repeat: int = 3
    result_fault: str | None = None
    result_fault_count: int | None = None
    expire_after_first: bool = False
    oversize_bytes: int = 40 * 2**20
    bomb_size: tuple[int, int] = (30000, 30000)
    slow_seconds: float = 5.0
    redirect_location: str = "http://10.0.0.1/x.jpg"
    result_content_length: bool = True
    chaos_seed: int = 0
    server_error_rate: float = 0.0
    throttle_rate: float = 0.0
    drop_rate: float = 0.0
    drop_hang_rate: float = 0.0
    drop_hang_seconds: float = 10.0
    callback_lost_rate: float = 0.0
    callback_duplicate_rate: float = 0.0
    callback_reorder_rate: float = 0.0

    def check(self) -> None:
        """Raise ValueError naming the first field with an impossible value."""
        for name in ("latency", "result_latency", "slow_seconds", "drop_hang_seconds"):
            _need(_number(getattr(self, name), 0), name, "a number of seconds >= 0")
        _need(
            _number(self.throttle_window, 0) and self.throttle_window > 0, "throttle_window", "> 0"
        )
        counts = ("drop_before_accept", "drop_after_accept", "fail_count", "garbage_count")
        for name in (*counts, "business_error_count"):
            _need(_integer(getattr(self, name), 0), name, "an integer >= 0")
        for name in ("drop_kind", "fail_kind", "garbage_kind"):
            _need(getattr(self, name) in (None, *PATH_KINDS), name, f"None or one of {PATH_KINDS}")
        _need(_integer(self.fail_status, 400, 599), "fail_status", "an HTTP status 400-599")
        _need(self.fail_body in ERROR_BODIES, "fail_body", f"one of {ERROR_BODIES}")
        _need(_optional(self.fail_retry_after, 0), "fail_retry_after", "None or an integer >= 0")
        _need(_optional(self.max_concurrent, 1), "max_concurrent", "None or an integer >= 1")
        _need(_optional(self.throttle_images, 1), "throttle_images", "None or an integer >= 1")
        _need(
            _integer(self.business_error_code) and self.business_error_code != 0,
            "business_error_code",
            "a non-zero integer",
        )
        _need(isinstance(self.business_error_message, str), "business_error_message", "a string")
        _need(self.callback_mode in CALLBACK_MODES, "callback_mode", f"one of {CALLBACK_MODES}")
        _need(_integer(self.callback_repeat, 1), "callback_repeat", "an integer >= 1")
        _need(
            self.result_fault in (None, *RESULT_FAULTS),
            "result_fault",
            f"None or one of {RESULT_FAULTS}",
        )
        _need(_optional(self.result_fault_count, 0), "result_fault_count", "None or an int >= 0")
        _need(_integer(self.oversize_bytes, 1), "oversize_bytes", "an integer >= 1")
        size = self.bomb_size
        _need(
            isinstance(size, tuple | list)
            and len(size) == 2
            and all(_integer(side, 1, 2**31 - 1) for side in size),
            "bomb_size",
            "(width, height), each 1 to 2**31-1",
        )
        _need(isinstance(self.redirect_location, str), "redirect_location", "a string")
        for name in ("expire_after_first", "result_content_length"):
            _need(isinstance(getattr(self, name), bool), name, "True or False")
        _need(_integer(self.chaos_seed), "chaos_seed", "an integer")
        for name in CHAOS_RATES:
            value = getattr(self, name)
            _need(_number(value, 0) and value <= 1, name, "a probability from 0 to 1")
        request_rates = self.server_error_rate + self.throttle_rate + self.drop_rate
        _need(
            request_rates <= 1 + 1e-9,
            "server_error_rate",
            "such that server_error_rate + throttle_rate + drop_rate <= 1",
        )


def _need(ok: bool, name: str, rule: str) -> None:
    if not ok:
        raise ValueError(f"faults.{name} must be {rule}")


def _integer(value, low: float = -math.inf, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value, low: float) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value) and value >= low


def _optional(value, low: int) -> bool:
    return value is None or _integer(value, low)


class Throttled(Exception):
    """A request over a throttle limit; the simulator answers 429 with `retry_after`."""

    def __init__(self, retry_after: int, reason: str):
        super().__init__(reason)
        self.retry_after, self.reason = retry_after, reason


class FaultsMixin:
    """The fault API of HiDreamSimulator; its state lives under the simulator's lock."""

    _lock: threading.RLock
    _stopping: threading.Event
    _sub_tasks: dict[str, tuple[Task, SubTask]]

    def _reset_faults(self) -> None:
        with self._lock:
            self.faults = Faults()
            self.throttled = self.accepted_submits = self.max_concurrency_seen = 0
            self.fault_events: list[tuple[str, str]] = []
            # A gauge, not a counter: a request may still be leaving while reset() runs.
            self._in_flight: int = getattr(self, "_in_flight", 0)
            self._window: deque[tuple[float, int]] = deque()  # (accepted at, pictures)
            self._fetches: dict[str, int] = {}  # result downloads per sub-task
            self.chaos_counts: Counter[str] = Counter()
            self._chaos = random.Random(self.faults.chaos_seed)

    def set_faults(self, **changes) -> Faults:
        """Change fields of `faults` at once (validated; TypeError for unknown names)."""
        with self._lock:
            changed = replace(self.faults, **changes)
            changed.check()
            for item in fields(Faults):
                setattr(self.faults, item.name, getattr(changed, item.name))
            if "chaos_seed" in changes:  # a new seed starts its sequence of draws afresh
                self._chaos = random.Random(self.faults.chaos_seed)
            return self.faults

    def fail_next(self, n=1, status=503, *, body="html", kind=None, retry_after=None) -> None:
        """The next `n` API requests (of `kind`, or any) answer HTTP `status`."""
        self.set_faults(
            fail_count=n,
            fail_status=status,
            fail_body=body,
            fail_kind=kind,
            fail_retry_after=retry_after,
        )

    def business_error_next(self, n=1, code=BALANCE_CODE, message=BALANCE_MESSAGE) -> None:
        """The next `n` submits answer HTTP 200 with business `code` and `message`."""
        self.set_faults(
            business_error_count=n, business_error_code=code, business_error_message=message
        )

    def drop_next(self, n=1, *, after_accept=False, kind=None) -> None:
        """Close the socket without a reply on the next `n` API requests (of `kind`).

        after_accept=True: the next `n` submits instead, after their task was created.
        """
        if after_accept:
            if kind not in (None, "submit"):
                raise ValueError("drop_next(after_accept=True) only applies to submits")
            self.set_faults(drop_after_accept=n)
        else:
            self.set_faults(drop_before_accept=n, drop_kind=kind)

    def garbage_next(self, n=1, *, kind=None) -> None:
        """The next `n` API requests (of `kind`, or any) answer 200 with HTML, not JSON."""
        self.set_faults(garbage_count=n, garbage_kind=kind)

    def throttle(self, images=None, *, window=60.0, concurrent=None) -> None:
        """Limit pictures per `window` s and concurrent API requests (None: no limit)."""
        self.set_faults(throttle_images=images, throttle_window=window, max_concurrent=concurrent)

    # --- used by the request handler -------------------------------------------------

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)  # stop() cuts it short

    def _record_fault(self, name: str, detail: str) -> None:
        with self._lock:
            self.fault_events.append((name, detail))

    def _take(self, name: str, kind: str, kind_field: str | None = None) -> bool:
        """Use up one of the fault `name`'s remaining count, if it applies to `kind`."""
        with self._lock:
            left = getattr(self.faults, name)
            wanted = getattr(self.faults, kind_field) if kind_field else None
            if left <= 0 or wanted not in (None, kind):
                return False
            setattr(self.faults, name, left - 1)
            self.fault_events.append((name, kind))
            return True

    def _chaos_request(self, kind: str) -> tuple[str, int] | None:
        """One draw for an API request: ("server_error", status), ("throttle", 429),
        ("drop", 0), ("drop", 1) (hang first) or None. Counted in ``chaos_counts`` and
        ``fault_events``."""
        with self._lock:
            faults = self.faults
            if not (faults.server_error_rate or faults.throttle_rate or faults.drop_rate):
                return None
            draw = self._chaos.random()
            if draw < faults.server_error_rate:
                fault = ("server_error", self._chaos.choice(CHAOS_STATUSES))
            elif draw < faults.server_error_rate + faults.throttle_rate:
                fault = ("throttle", 429)
            elif draw < faults.server_error_rate + faults.throttle_rate + faults.drop_rate:
                fault = ("drop", int(self._chaos.random() < faults.drop_hang_rate))
            else:
                return None
            self.chaos_counts[f"{fault[0]}:{kind}"] += 1
            if fault == ("drop", 1):
                self.chaos_counts[f"hang:{kind}"] += 1
            self.fault_events.append((f"chaos: {fault[0]}", kind))
            return fault

    def _chaos_callbacks(self, task_id: str) -> tuple[str, ...] | None:
        """The callback plan of a task just accepted: () delivered once; ("lost",);
        or "duplicate" and/or "reorder". None when no callback rate is set."""
        with self._lock:
            faults = self.faults
            rates = (
                faults.callback_lost_rate,
                faults.callback_duplicate_rate,
                faults.callback_reorder_rate,
            )
            if not any(rates):
                return None
            # Always three draws, so one task's fate does not shift the next one's.
            lost, duplicate, reorder = (self._chaos.random() < rate for rate in rates)
            plan = ("lost",) if lost else ("duplicate",) * duplicate + ("reorder",) * reorder
            for name in plan:
                self.chaos_counts[f"callback_{name}"] += 1
                self.fault_events.append((f"chaos: callback {name}", task_id))
            return plan

    def _enter_api(self) -> bool:
        """Count an API request in flight; True if it is over `max_concurrent`."""
        with self._lock:
            self._in_flight += 1
            self.max_concurrency_seen = max(self.max_concurrency_seen, self._in_flight)
            limit = self.faults.max_concurrent
            return limit is not None and self._in_flight > limit

    def _leave_api(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _note_throttled(self, kind: str, reason: str) -> None:
        with self._lock:
            self.throttled += 1
            self.fault_events.append((f"throttled: {reason}", kind))

    def _reserve_pictures(self, body: dict) -> tuple[float, int]:
        """Count a submit's pictures in the window, or raise Throttled if over the limit."""
        count = body.get("image_count", 1)
        valid = isinstance(count, int) and not isinstance(count, bool) and count >= 1
        count = count if valid else 1  # validation refuses it later; then it is released
        with self._lock:
            now, window = time.monotonic(), self.faults.throttle_window
            while self._window and self._window[0][0] <= now - window:
                self._window.popleft()
            limit = self.faults.throttle_images
            used = sum(pictures for _, pictures in self._window)
            if limit is not None and used + count > limit:
                wait, excess = window, used + count - limit
                if count <= limit:
                    for accepted_at, pictures in self._window:
                        excess -= pictures
                        if excess <= 0:
                            wait = accepted_at + window - now
                            break
                raise Throttled(max(1, math.ceil(wait)), f"{limit} pictures per {window:g} s")
            ticket = (now, count)
            self._window.append(ticket)
            return ticket

    def _settle_submit(self, ticket: tuple[float, int], accepted: bool) -> None:
        with self._lock:
            if accepted:
                self.accepted_submits += 1
            elif ticket in self._window:  # it may have left the window already
                self._window.remove(ticket)

    def _result_fault(self, sub_task_id: str) -> str | None:
        """The fault to serve instead of this result picture, or None for the picture."""
        with self._lock:
            fault, limit = self.faults.result_fault, self.faults.result_fault_count
            task, sub = self._sub_tasks.get(sub_task_id, (None, None))
            if sub is None or not is_finished(task) or sub.final_status != 1:
                return None  # the usual 404
            fetches = self._fetches.get(sub_task_id, 0)
            self._fetches[sub_task_id] = fetches + 1
            if fault is None or (limit is not None and sub.index > limit):
                return None
            if fault == "expired" and self.faults.expire_after_first and fetches == 0:
                return None
            self.fault_events.append((f"result_fault: {fault}", sub_task_id))
            return fault
