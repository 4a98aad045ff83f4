"""A task backend for tests: stores jobs like DummyBackend, in one list shared by all threads.

Django keeps one backend instance per thread, so jobs enqueued by the live server's thread
(the callback view) would be invisible to the test thread with the stock DummyBackend.
``run_jobs`` then executes them the way a worker would, in order, until none are left.
"""

from __future__ import annotations

import threading
import time

from django.tasks.backends.dummy import DummyBackend
from django.tasks.base import TaskResultStatus

_lock = threading.Lock()
_jobs: list = []


class SharedDummyBackend(DummyBackend):
    """DummyBackend whose stored jobs are shared across threads."""

    def _store_result(self, result):
        super()._store_result(result)
        with _lock:
            _jobs.append(result)


def pending_jobs() -> list:
    with _lock:
        return list(_jobs)


def clear_jobs() -> None:
    with _lock:
        _jobs.clear()


def _due(job) -> float:
    run_after = job.task.run_after
    return run_after.timestamp() if run_after else 0.0


def run_jobs(limit: int = 500, max_wait: float = 5.0) -> list:
    """Run stored jobs (and the jobs they enqueue) like a worker: the earliest due first, in
    FIFO order among those due, sleeping until a deferred job's ``run_after`` (at most
    ``max_wait`` seconds at a time). Returns the names of the jobs run."""
    ran = []
    for _ in range(limit):
        with _lock:
            if not _jobs:
                return ran
            job = min(_jobs, key=_due)
            _jobs.remove(job)
        wait = _due(job) - time.time()
        if wait > 0:
            time.sleep(min(wait, max_wait))
        job.task.call(*job.args, **job.kwargs)
        object.__setattr__(job, "status", TaskResultStatus.SUCCESSFUL)
        ran.append(job.task.name)
    raise AssertionError(f"more than {limit} jobs: a job keeps re-enqueueing itself")


def take(name: str) -> list:
    """Remove the pending jobs called ``name`` and return them, to run them some other way
    (say, from several threads at once, like several workers)."""
    with _lock:
        chosen = [job for job in _jobs if job.task.name == name]
        for job in chosen:
            _jobs.remove(job)
    return chosen


def run_only(name: str) -> int:
    """Run the pending jobs called ``name`` (once each, FIFO), leaving every other job, and
    the ones they enqueue, pending. Returns how many ran.

    For tests that look between two steps of the pipeline, e.g. after the callbacks are
    stored and applied (``receive_callback``) and before their downloads run.
    """
    chosen = take(name)
    for job in chosen:
        job.task.call(*job.args, **job.kwargs)
        object.__setattr__(job, "status", TaskResultStatus.SUCCESSFUL)
    return len(chosen)


def apply_callbacks() -> int:
    """Store and apply the callbacks the callback view queued (``receive_callback``, see
    ``run_only``), and any stored callback queued on its own (``apply_callback_event``)."""
    return run_only("receive_callback") + run_only("apply_callback_event")
