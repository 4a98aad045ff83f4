"""Retention: forget what is no longer useful, never what the shop shows.

``purge(older_than)`` deletes callback events older than the cut-off, failed tasks created
before it together with their files, and API idempotency keys past
``HIDREAM_IDEMPOTENCY_KEY_TTL`` (forgotten already; this frees their rows). A task with a
published picture is never deleted, nor is a product's own photo (only files under the app's
storage prefix are removed: a task's files go after the commit, as any deleted task's do,
see ``signals``).

It also sweeps orphans: files under ``HIDREAM_STORAGE_PREFIX`` that no row names (a copy of
a publish rolled back by an outer transaction, a file whose delete failed, a task deleted by
hand) and that were last modified more than ``orphans_older_than`` ago (an hour by default),
so that a file being written right now, whose row is not committed yet, is never taken. A
storage that cannot tell a file's modification time keeps all its files; an empty prefix
turns the sweep off (the app could not tell its files from the shop's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice

from django.db import transaction
from django.utils import timezone

from .. import files as app_files
from ..conf import hidream_settings
from ..models import (
    CallbackEvent,
    GeneratedImage,
    HiDreamIdempotencyKey,
    ModelImageTask,
    TaskStatus,
)

#: Orphans younger than this are kept: their row may still be on its way.
ORPHAN_GRACE = timedelta(hours=1)


@dataclass
class PurgeReport:
    """How much a purge removed (or would remove, on a dry run)."""

    callback_events: int = 0
    tasks: int = 0
    files: int = 0
    idempotency_keys: int = 0
    orphans: int = 0

    def __str__(self) -> str:
        return (
            f"{self.callback_events} callback events, {self.tasks} failed tasks, {self.files} "
            f"files, {self.idempotency_keys} expired idempotency keys, {self.orphans} "
            "orphaned files"
        )


def orphan_files(older_than: datetime) -> list[str]:
    """Files under the app's prefix, last modified before ``older_than``, that no row names."""
    found: list[str] = []
    candidates = app_files.app_files(older_than)
    while chunk := list(islice(candidates, 500)):
        named = app_files.referenced_files(chunk)
        found.extend(name for name in chunk if name not in named)
    return sorted(found)


def purge(
    older_than: datetime,
    *,
    dry_run: bool = False,
    orphans_older_than: timedelta = ORPHAN_GRACE,
) -> PurgeReport:
    """Delete callback events and failed tasks older than ``older_than``, and orphaned files
    older than ``orphans_older_than`` (see module doc)."""
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
        if app_files.is_app_file(name)
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
    orphans = orphan_files(timezone.now() - orphans_older_than)
    report.orphans = len(orphans)
    if dry_run:
        return report
    with transaction.atomic():
        expired_keys.delete()
        events.delete()
        # Their files go after the commit (signals): a failed delete leaves a file, never a
        # row naming a deleted one.
        ModelImageTask.objects.filter(pk__in=list(tasks.values_list("pk", flat=True))).delete()
    # Named by no row when listed; deleted only if still so (a row may have come since).
    app_files.delete_unreferenced(orphans)
    return report
