"""How the HiDream simulator calls a finished task's ``notify_url``.

``deliver`` is one delivery with HiDream's rule (§5 of API-REFERENCE.md): POST the JSON,
wait ``sim.callback_timeout`` s; an HTTP 200 counts as delivered, anything else is
retried every ``sim.callback_retry_interval`` s, ``sim.callback_max_attempts`` attempts
in all. Every attempt is recorded in ``sim.callback_attempts``. ``send`` delivers the
final callback the way ``sim.faults.callback_mode`` says (see faults.py): once, never,
repeated, followed by a stale snapshot, or from parallel threads; a task with a chaos plan
(``task.callback_plan``) follows its plan instead. Nothing here imports Django.
"""

import contextlib
import copy
import json
import logging
import threading
import uuid
from typing import TYPE_CHECKING

import requests

from .state import Task

if TYPE_CHECKING:
    from .server import HiDreamSimulator

logger = logging.getLogger("hidream_models.simulator")


def send(sim: "HiDreamSimulator", task: Task, payload: dict) -> None:
    """Deliver `task`'s final callback `payload` according to its plan or the callback mode."""
    if task.callback_plan is not None:
        return _send_planned(sim, task, payload, task.callback_plan)
    mode, repeat = sim.faults.callback_mode, sim.faults.callback_repeat
    if mode != "normal":
        sim._record_fault(f"callback: {mode}", task.task_id)
    if mode == "lost":
        return
    if mode == "duplicate":
        for _ in range(repeat):
            deliver(sim, task, payload)
    elif mode == "concurrent_duplicates":
        _in_parallel(sim, task, payload, repeat)
    else:  # normal, early (the caller decides when) and out_of_order
        deliver(sim, task, payload)
        if mode == "out_of_order":
            deliver(sim, task, stale_snapshot(payload), stale=True)


def _send_planned(sim: "HiDreamSimulator", task: Task, payload: dict, plan: tuple) -> None:
    """A chaos plan (faults.py): lost; else once or twice at once, then maybe a stale one."""
    if "lost" in plan:
        return
    if "duplicate" in plan:
        _in_parallel(sim, task, payload, 2)
    else:
        deliver(sim, task, payload)
    if "reorder" in plan:
        deliver(sim, task, stale_snapshot(payload), stale=True)


def stale_snapshot(payload: dict) -> dict:
    """An older "still processing" version of a final callback payload."""
    stale = copy.deepcopy(payload)
    stale["request_id"] = str(uuid.uuid4())
    for item in stale["result"]["sub_task_results"]:
        item.update(task_status=2, task_completion=0.5, image="", description="")
    return stale


def _in_parallel(sim: "HiDreamSimulator", task: Task, payload: dict, count: int) -> None:
    barrier = threading.Barrier(count)

    def run() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)  # all threads POST at the same moment
        deliver(sim, task, payload)

    threads = [
        threading.Thread(target=run, name="hidream-simulator-callback", daemon=True)
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def deliver(sim: "HiDreamSimulator", task: Task, payload: dict, *, stale: bool = False) -> None:
    """POST `payload` to the task's notify_url with HiDream's timeout and retries.

    Each attempt is recorded in ``sim.callback_attempts`` and the ledger (`stale`: an older
    snapshot, not the final result)."""
    url, body = task.order.notify_url, json.dumps(payload, ensure_ascii=False).encode()
    for attempt in range(1, sim.callback_max_attempts + 1):
        if sim._stopping.is_set() or sim._tasks.get(task.task_id) is not task:
            return  # stopped, or reset() forgot the task: its retries must not leak on
        try:
            response = requests.post(
                url,
                data=body,
                timeout=sim.callback_timeout,
                headers={"Content-Type": "application/json"},
                allow_redirects=False,
            )
            outcome: int | str = response.status_code
            response.close()
        except requests.RequestException as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        with sim._lock:
            if sim._tasks.get(task.task_id) is not task:
                return
            sim.callback_attempts.append((url, outcome))
        sim.ledger.called_back(task.task_id, outcome, stale=stale)
        if outcome == 200:
            logger.info("callback delivered to %s (attempt %d)", url, attempt)
            return
        logger.warning(
            "callback attempt %d/%d to %s failed: %s",
            attempt,
            sim.callback_max_attempts,
            url,
            outcome,
        )
        if attempt < sim.callback_max_attempts and sim._stopping.wait(sim.callback_retry_interval):
            return
    logger.error("callback to %s given up after %d attempts", url, sim.callback_max_attempts)
