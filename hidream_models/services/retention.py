"""Retention: forget what is no longer useful, never what the shop shows.

``purge(older_than)`` deletes callback events older than the cut-off, failed tasks created
before it together with their files, and API idempotency keys past
``HIDREAM_IDEMPOTENCY_KEY_TTL`` (forgotten already; this frees their rows). A task with a
published picture is never deleted, nor is a product's own photo (only uploads the app stored
itself are removed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from ..conf import hidream_settings
from ..models import (
    CallbackEvent,
    GeneratedImage,
    HiDreamIdempotencyKey,
    ModelImageTask,
    TaskStatus,
)

logger = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    """How much a purge removed (or would remove, on a dry run)."""

    callback_events: int = 0
    tasks: int = 0
    files: int = 0
    idempotency_keys: int = 0

    def __str__(self) -> str:
        return (
            f"{self.callback_events} callback events, {self.tasks} failed tasks, {self.files} "
            f"files, {self.idempotency_keys} expired idempotency keys"
        )


def _own_upload(name: str) -> bool:
    """Files the app stored itself (uploads, masks), as opposed to the shop's product photos."""
    prefix = hidream_settings.STORAGE_PREFIX.rstrip("/") + "/"
    return bool(name) and name.startswith((prefix + "sources/", prefix + "masks/"))


def purge(older_than: datetime, *, dry_run: bool = False) -> PurgeReport:
    """Delete callback events and failed tasks older than ``older_than`` (see module doc)."""
    report = PurgeReport()
    events = CallbackEvent.objects.filter(received_at__lt=older_than)
    tasks = (
        ModelImageTask.objects.filter(status=TaskStatus.FAILED, created_at__lt=older_than)
        .exclude(images__published_as__gt="")
        .distinct()
    )
    files = [
        name
        for name in GeneratedImage.objects.filter(task__in=tasks).values_list("file", flat=True)
        if name
    ]
    uploads = {
        name
        for pair in tasks.values_list("source_image", "mask")
        for name in pair
        if _own_upload(name)
    }
    # A retry reuses its original's upload: keep any file a surviving task still names.
    kept = ModelImageTask.objects.exclude(pk__in=tasks.values("pk"))
    still_used = set(
        kept.filter(source_image__in=uploads).values_list("source_image", flat=True)
    ) | set(kept.filter(mask__in=uploads).values_list("mask", flat=True))
    files += sorted(uploads - still_used)
    expired_keys = HiDreamIdempotencyKey.objects.filter(
        created_at__lt=timezone.now() - timedelta(seconds=hidream_settings.IDEMPOTENCY_KEY_TTL)
    )
    report.idempotency_keys = expired_keys.count()
    report.callback_events = events.count()
    report.tasks = tasks.count()
    report.files = len(files)
    if dry_run:
        return report
    with transaction.atomic():
        expired_keys.delete()
        events.delete()
        ModelImageTask.objects.filter(pk__in=list(tasks.values_list("pk", flat=True))).delete()
    for name in files:  # after the commit: a failed delete leaves a file, never a dangling row
        try:
            default_storage.delete(name)
        except OSError as exc:
            logger.warning("Could not delete %s: %s", name, exc)
    return report
