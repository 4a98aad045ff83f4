"""Background jobs (``django.tasks``): thin wrappers that call the services.

Arguments are strings and ints (and lists of them) only, so every backend (database,
Celery) can serialise them. Queue names and priorities are chosen at enqueue
time, never in ``@task``, which would validate them against the configured backend at
import time.
"""

from __future__ import annotations

import logging

from django.tasks import task

from . import services
from .exceptions import HiDreamError

logger = logging.getLogger(__name__)


@task
def dispatch_submissions(task_ids: list[str]) -> int:
    """Enqueue one submit job per task, so a bulk run costs the web request one enqueue."""
    for task_id in task_ids:
        submit_model_image.enqueue(task_id)
    return len(task_ids)


@task
def submit_model_image(task_id: str) -> str | None:
    """Submit one queued task to HiDream."""
    return services.submit_task(task_id)


@task
def sync_model_image_task(task_id: str) -> bool:
    """Poll HiDream for one task and apply the result; True if anything changed."""
    try:
        outcome = services.sync_task(task_id)
    except HiDreamError:
        return False  # recorded on the task; the next poll tries again
    return bool(outcome and outcome.changed)


@task
def download_generated_image(image_id: int) -> str | None:
    """Copy one ready picture into the shop's storage."""
    return services.download_result(image_id)


@task
def sync_pass() -> str:
    """One pass of the polling fallback and sweep (for periodic schedulers)."""
    return str(services.sync_pass())


@task
def sync_templates_job() -> str:
    """Refresh the template catalogue from HiDream (the admin's "Sync" action)."""
    from .services.templates import sync_templates

    return str(sync_templates())


@task
def apply_received_callbacks() -> int:
    """Apply every stored callback still ``received`` (queued by the callback view)."""
    return services.apply_received_callbacks()


@task
def apply_callback_event(event_id: int) -> str | None:
    """Apply one stored callback (``services.callbacks``).

    The view no longer queues this job (it queues ``apply_received_callbacks``); it stays
    for jobs queued before the upgrade, which would otherwise fail to import.
    """
    return services.apply_callback_event(event_id)
