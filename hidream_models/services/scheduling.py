"""Enqueueing background jobs after commit, with backoff, on any ``django.tasks`` backend.

No ``django.tasks`` backend retries a failed job, so the services re-enqueue transient
failures themselves with ``.using(run_after=...)``. A backend that cannot defer (the immediate
one) gets nothing enqueued for later: the row keeps its ``next_attempt_at`` and the sweep of
``hidream_sync`` picks it up when due, so retries work on every backend.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.db import transaction
from django.tasks import task_backends
from django.utils import timezone

from ..conf import hidream_settings

logger = logging.getLogger(__name__)


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter for the ``attempt``-th failure (1-based).

    "Equal jitter": half the capped exponential delay, plus a random part up to the other half,
    so workers that failed together do not come back together. HiDream's ``Retry-After`` is a
    floor, never shortened.
    """
    ceiling = min(
        hidream_settings.RETRY_BACKOFF * (2 ** max(0, attempt - 1)),
        hidream_settings.RETRY_BACKOFF_MAX,
    )
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after:
        delay = max(delay, retry_after)
    return delay


def backend_can_defer(job) -> bool:
    return task_backends[job.backend].supports_defer


def enqueue_after_commit(job, *args, delay: float = 0.0) -> bool:
    """Enqueue ``job(*args)`` once the transaction commits; ``delay`` seconds later if possible.

    Returns False when a delay was asked for but the backend cannot defer: the caller has
    recorded ``next_attempt_at`` and the sweep will run the work.
    """
    if delay > 0 and not backend_can_defer(job):
        return False

    def enqueue() -> None:
        try:
            if delay > 0:
                job.using(run_after=timezone.now() + timedelta(seconds=delay)).enqueue(*args)
            else:
                job.enqueue(*args)
        except Exception:
            # The row keeps its state, so the sweep recovers the work; never lose the commit.
            logger.exception("Could not enqueue %s%r; hidream_sync will pick it up", job.name, args)

    transaction.on_commit(enqueue)
    return True
