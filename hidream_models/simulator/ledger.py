"""The HiDream simulator's ledger: every task it accepted (and so billed), for the chaos run.

HiDream bills a task when it accepts the submit, whether or not its answer reaches the
caller. The ledger records each accepted submit as HiDream would see it: its task and
sub-task ids, the caller's reference for it when one can be read (the first UUID in the
``notify_url`` path: the app puts its own task id there), the SHA-256 of the submitted
picture, the fate of its reply (``sent``; ``dropped``, ``hung up`` or ``504`` by a fault;
``failed`` while writing; ``None`` while in flight) with how long it took, the chaos plan of its
callback (faults.py), each callback delivery attempt and its outcome, and the SHA-256 of
every result picture served for each sub-task. Submits answered without a task (a fault's
5xx or 429, a business or parameter error) are listed apart, with the caller's reference and
the answer. ``make test-chaos`` compares the app's database with it after the run. Nothing
here imports Django.
"""

import base64
import binascii
import hashlib
import re
import threading
import time
from urllib.parse import urlsplit

from .state import Task
from .validation import URL_SCHEME

UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def caller_reference(notify_url) -> str | None:
    """The first UUID in the path of `notify_url` (lower case), or None."""
    if not isinstance(notify_url, str) or not notify_url:
        return None
    found = UUID.search(urlsplit(notify_url).path)
    return found.group(0).lower() if found else None


def image_sha256(image) -> str | None:
    """SHA-256 of a submitted base64 picture's bytes; None for a URL or a broken value."""
    if not isinstance(image, str) or URL_SCHEME.match(image):
        return None
    try:
        return hashlib.sha256(base64.b64decode(image, validate=True)).hexdigest()
    except (binascii.Error, ValueError):
        return None


class Ledger:
    """Accepted submits by HiDream task id, in the order they were accepted (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, dict] = {}
        self._refusals: list[dict] = []

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._refusals.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def billed(self, task: Task, body: dict) -> None:
        """Record `task`, just accepted from the submit `body`."""
        entry = {
            "task_id": task.task_id,
            "sub_task_ids": [sub.sub_task_id for sub in task.sub_tasks],
            "caller_ref": caller_reference(task.order.notify_url),
            "image_sha256": image_sha256(body.get("image")),
            "image_count": task.order.image_count,
            "accepted_at": time.time(),
            "reply": None,
            "reply_seconds": None,
            "callback_plan": list(task.callback_plan) if task.callback_plan is not None else None,
            "callbacks": [],
            "served": {sub.sub_task_id: [] for sub in task.sub_tasks},
        }
        with self._lock:
            self._entries[task.task_id] = entry

    def refused(self, notify_url, answer: str) -> None:
        """A submit was answered `answer` (e.g. "HTTP 503") and no task was created."""
        refusal = {"caller_ref": caller_reference(notify_url), "at": time.time(), "answer": answer}
        with self._lock:
            self._refusals.append(refusal)

    def refusals(self) -> list[dict]:
        """A copy of the submits answered without a task, oldest first."""
        with self._lock:
            return [dict(item) for item in self._refusals]

    def replied(self, task_id: str | None, outcome: str, seconds: float) -> None:
        """How the submit's reply ended ("sent", "dropped", "hung up", "504" or "failed"),
        `seconds` after the request came."""
        with self._lock:
            entry = self._entries.get(task_id or "")
            if entry is not None:
                entry["reply"], entry["reply_seconds"] = outcome, round(seconds, 3)

    def called_back(self, task_id: str, outcome: int | str, *, stale: bool) -> None:
        """One delivery attempt of the task's callback: an HTTP status or an error text."""
        with self._lock:
            entry = self._entries.get(task_id)
            if entry is not None:
                entry["callbacks"].append({"at": time.time(), "outcome": outcome, "stale": stale})

    def served(self, task_id: str, sub_task_id: str, data: bytes) -> None:
        """A result picture of `sub_task_id` was served with these bytes."""
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            entry = self._entries.get(task_id)
            if entry is not None:
                seen = entry["served"].setdefault(sub_task_id, [])
                if digest not in seen:
                    seen.append(digest)

    def entries(self) -> list[dict]:
        """A copy of every entry, oldest first."""
        with self._lock:
            return [
                dict(
                    entry,
                    callbacks=[dict(item) for item in entry["callbacks"]],
                    served={key: list(value) for key, value in entry["served"].items()},
                )
                for entry in self._entries.values()
            ]
