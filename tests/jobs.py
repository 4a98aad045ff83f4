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


def run_only(name: str, *, when_due: bool = False) -> list:
    """Run the pending jobs called ``name`` (once each, FIFO), leaving every other job, and
    the ones they enqueue, pending. Returns what they returned. ``when_due``: each once its
    ``run_after`` has come, as a worker would.

    For tests that look between two steps of the pipeline, e.g. after the callbacks are
    applied and before their downloads run.
    """
    returned = []
    for job in take(name):
        wait = _due(job) - time.time()
        if when_due and wait > 0:
            time.sleep(wait)
        returned.append(job.task.call(*job.args, **job.kwargs))
        object.__setattr__(job, "status", TaskResultStatus.SUCCESSFUL)
    return returned


def apply_callbacks() -> int:
    """Run the jobs that apply the callbacks the callback view stored, each when due (the
    view defers them by the batch window); returns how many callbacks they applied."""
    return sum(run_only("apply_received_callbacks", when_due=True)) + sum(
        outcome is not None for outcome in run_only("apply_callback_event")
    )
