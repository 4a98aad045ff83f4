"""The polling fallback and the sweep: what ``hidream_sync`` runs.

HiDream delivers a callback at most three times within seconds, so callbacks can be lost for
good (API-REFERENCE §5). One ``sync_pass`` therefore:

1. fails tasks still unfinished at ``HIDREAM_TASK_DEADLINE``, saying so;
2. polls the tasks whose callback is overdue (``HIDREAM_CALLBACK_GRACE`` after submission,
   or right away when no callback URL is configured), at most every ``HIDREAM_POLL_INTERVAL``,
   one at a time, each holding a concurrent-request slot; after ``HIDREAM_MAX_ATTEMPTS``
   failed polls in a row, or a 429, it stops polling until the next pass;
3. runs submissions and downloads whose retry is due but that no job is carrying (backends that
   cannot defer, or a lost enqueue), and queued tasks no job has touched for a lease (a job
   lost with a killed worker process).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import hidream_settings
from ..downloads import deadline_seconds
from ..exceptions import HiDreamAPIError, HiDreamError, HiDreamHTTPError
from ..models import (
    REMOTE_TASK_STATUSES,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from ..payloads import PayloadError
from . import transitions
from .callbacks import apply_unapplied_callbacks
from .clients import get_client
from .limits import lease_seconds
from .results import ApplyOutcome, apply_result, download_result, settle_status
from .scheduling import backend_can_defer, enqueue_after_commit
from .submission import mark_unconfirmed, submit_task

# How late a deferred job may be before the sweep assumes it was lost and runs the work.
LOST_JOB_GRACE = 30

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """Counts of what one pass did, for the command's output."""

    polled: int = 0
    changed: int = 0
    expired: int = 0
    resubmitted: int = 0
    downloads: int = 0
    recovered: int = 0
    errors: int = 0
    polling_stopped: bool = False

    def __str__(self) -> str:
        return (
            f"polled {self.polled} (changed {self.changed}), expired {self.expired}, "
            f"submissions resumed {self.resubmitted}, downloads resumed {self.downloads}, "
            f"interrupted work recovered {self.recovered}, errors {self.errors}"
            + (" (polling stopped: HiDream kept failing)" if self.polling_stopped else "")
        )


def sync_task(task_id) -> ApplyOutcome | None:
    """Ask HiDream for one task's result and apply it (the body of the sync job).

    Errors are recorded on the task and left for the next poll; the deadline ends the wait.
    """
    task = ModelImageTask.objects.filter(pk=task_id).first()
    if task is None or task.status not in REMOTE_TASK_STATUSES or not task.remote_task_id:
        return None
    try:
        with get_client() as client:
            payload = client.get_model_image_result(task.remote_task_id)
    except (HiDreamError, ImproperlyConfigured) as exc:
        # Only while still waiting: a callback may have finished the task meanwhile.
        ModelImageTask.objects.filter(pk=task.pk, status__in=REMOTE_TASK_STATUSES).update(
            last_polled_at=timezone.now(),
            error_code=exc.code if isinstance(exc, HiDreamAPIError) else None,
            error_message=_("Polling failed, will try again: %(error)s") % {"error": exc},
        )
        logger.warning("Polling task %s failed: %s", task.pk, exc)
        if isinstance(exc, ImproperlyConfigured):
            raise HiDreamError(str(exc)) from exc
        raise
    try:
        return apply_result(task.pk, payload, source="poll")
    except PayloadError as exc:
        # HiDream answered about another task, say: recorded for staff, polled again later.
        ModelImageTask.objects.filter(pk=task.pk, status__in=REMOTE_TASK_STATUSES).update(
            last_polled_at=timezone.now(),
            error_message=_("HiDream's answer to a poll could not be applied: %(error)s")
            % {"error": exc},
        )
        logger.warning("The poll of task %s could not be applied: %s", task.pk, exc)
        return None


def expire_overdue_tasks(now=None) -> int:
    """Fail the unfinished pictures of tasks past the deadline; returns how many tasks."""
    now = now or timezone.now()
    deadline = now - timedelta(seconds=hidream_settings.TASK_DEADLINE)
    minutes = round(hidream_settings.TASK_DEADLINE / 60)
    reason = _(
        "HiDream sent no result within %(minutes)s minutes (HIDREAM_TASK_DEADLINE), so the "
        "task was given up."
    ) % {"minutes": minutes}
    overdue_queued = ModelImageTask.objects.filter(created_at__lt=deadline)
    # Sent before and queued to be sent again (its answer was lost): HiDream may have it, and
    # may have billed it. Not "failed, never sent", which would invite a paid retry: unconfirmed.
    expired = transitions.move_all(
        overdue_queued.filter(request_sent_at__isnull=False),
        TaskStatus.UNCONFIRMED,
        expected=[TaskStatus.QUEUED],
        error_message=_(
            "Sent to HiDream, but no answer came and it could not be sent again within "
            "%(minutes)s minutes (HIDREAM_TASK_DEADLINE). It may have been generated, and "
            "billed: “Retry” sends it again knowingly."
        )
        % {"minutes": minutes},
    )
    expired += transitions.move_all(
        overdue_queued.filter(request_sent_at__isnull=True),
        TaskStatus.FAILED,
        expected=[TaskStatus.QUEUED],
        finished_at=now,
        error_message=_(
            "Could not be sent to HiDream within %(minutes)s minutes (HIDREAM_TASK_DEADLINE)."
        )
        % {"minutes": minutes},
    )
    overdue = ModelImageTask.objects.filter(
        status__in=REMOTE_TASK_STATUSES, submitted_at__lt=deadline
    ).values_list("pk", flat=True)
    for task_id in overdue:
        with transaction.atomic():
            task = ModelImageTask.objects.select_for_update().get(pk=task_id)
            if task.status not in REMOTE_TASK_STATUSES:
                continue  # finished since the list was read
            read_status = task.status
            images = list(task.images.select_for_update())
            known = {image.sub_task_id for image in images}
            for position, sub_task_id in enumerate(task.sub_task_ids):
                if sub_task_id not in known:  # HiDream never reported this sub-task at all
                    images.append(
                        GeneratedImage(task=task, sub_task_id=sub_task_id, position=position)
                    )
            for image in images:
                if image.status == ImageStatus.PENDING:
                    image.status = ImageStatus.FAILED
                    image.failure_reason = reason
                    image.save()
            if not images:
                task.status = TaskStatus.FAILED
                task.finished_at = now
            else:
                settle_status(task, images, expected=len(images))
            if task.status == TaskStatus.FAILED:
                task.error_message = reason
            transitions.save_locked(task, read_status)
            expired += 1
    return expired


def tasks_due_for_polling(now=None):
    """Submitted tasks whose callback is overdue and that were not polled recently."""
    now = now or timezone.now()
    grace = hidream_settings.CALLBACK_GRACE if hidream_settings.CALLBACK_BASE_URL else 0
    return (
        ModelImageTask.objects.filter(
            status__in=REMOTE_TASK_STATUSES,
            remote_task_id__isnull=False,
            submitted_at__lte=now - timedelta(seconds=grace),
        )
        .filter(
            Q(last_polled_at__isnull=True)
            | Q(last_polled_at__lte=now - timedelta(seconds=hidream_settings.POLL_INTERVAL))
        )
        .filter(Q(images__isnull=True) | Q(images__status=ImageStatus.PENDING))
        .distinct()
        .order_by("submitted_at")
    )


def sync_pass(now=None, *, limit: int = 500) -> SyncReport:
    """One pass of the polling fallback and the sweep (see the module doc)."""
    now = now or timezone.now()
    report = SyncReport()
    report.expired = expire_overdue_tasks(now)
    failures_in_a_row = 0
    for task_id in list(tasks_due_for_polling(now).values_list("pk", flat=True)[:limit]):
        report.polled += 1
        try:
            outcome = sync_task(task_id)
        except Exception as exc:
            report.errors += 1
            if not isinstance(exc, HiDreamError):
                # One task's trouble (a database error, a bug) must not stop the sweep below.
                logger.exception("Polling task %s failed", task_id)
                continue
            failures_in_a_row += 1
            # HiDream is down or throttling: asking about the other tasks now only adds load
            # (each poll holds a concurrent-request slot the submits need). The next pass
            # goes on where this one stopped.
            throttled = isinstance(exc, HiDreamHTTPError) and exc.status == 429
            if throttled or failures_in_a_row >= hidream_settings.MAX_ATTEMPTS:
                logger.warning(
                    "Polling stopped for this pass after %s failed polls in a row: %s",
                    failures_in_a_row,
                    exc,
                )
                report.polling_stopped = True
                break
            continue
        failures_in_a_row = 0
        if outcome and outcome.changed:
            report.changed += 1
    report.recovered = recover_interrupted_work(now)
    # Retries a deferring backend should have run by now (or that a non-deferring backend
    # cannot run at all): run them here.
    from ..tasks import submit_model_image

    grace = timedelta(seconds=LOST_JOB_GRACE) if backend_can_defer(submit_model_image) else None
    cutoff = now - grace if grace else now
    # And queued tasks no job has touched for as long as a lease (their first job, or the
    # sweep's requeue, was lost: a worker's pool process killed holding it, a broker restart).
    unscheduled_before = now - timedelta(seconds=max(LOST_JOB_GRACE, lease_seconds()))
    due_submits = (
        ModelImageTask.objects.filter(status=TaskStatus.QUEUED)
        .filter(
            Q(next_attempt_at__lte=cutoff)
            | Q(next_attempt_at__isnull=True, updated_at__lt=unscheduled_before)
        )
        .values_list("pk", flat=True)[:limit]
    )
    for task_id in list(due_submits):
        report.resubmitted += _run_one(submit_task, task_id, report)
    due_downloads = GeneratedImage.objects.filter(
        status=ImageStatus.DOWNLOADING, next_attempt_at__lte=cutoff
    ).values_list("pk", flat=True)[:limit]
    for image_id in list(due_downloads):
        report.downloads += _run_one(download_result, image_id, report)
    return report


def _run_one(work, object_id, report: SyncReport) -> bool:
    """Run one piece of the sweep's work; an exception is logged and counted, and the sweep
    goes on with the next. True if it did something."""
    try:
        return work(object_id) is not None
    except Exception:
        logger.exception("%s(%s) failed in the sweep", work.__name__, object_id)
        report.errors += 1
        return False


def download_lease_seconds() -> float:
    """How long a download may show no progress before the sweep starts it again: longer
    than its own deadline allows, so the sweep never starts a second one beside one still
    going (both would write the same file)."""
    return max(lease_seconds(), deadline_seconds() + 30)


def recover_interrupted_work(now=None) -> int:
    """Work whose worker died (SIGKILL, OOM, deploy) stays in a busy state forever; move it on.

    - ``submitting`` for longer than a request can take: if the request had left (its
      ``request_sent_at`` is after the claim), HiDream may have it: ``unconfirmed``, never
      resent silently. Otherwise it was never sent: back to the queue.
    - ``downloading`` with no retry planned and no progress for as long: download again (the
      file only reaches storage after verification, so nothing partial was kept).
    - a callback stored but still ``received`` ``callbacks.UNAPPLIED_AFTER`` after it came
      (its job was lost, refused or early): apply it here.
    """
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=lease_seconds())
    recovered = 0
    # Stale: claimed, and (if it was) sent, longer ago than a request can take.
    stuck = (
        ModelImageTask.objects.filter(status=TaskStatus.SUBMITTING, updated_at__lt=stale_before)
        .filter(Q(request_sent_at__isnull=True) | Q(request_sent_at__lt=stale_before))
        .values_list("pk", "claim", "updated_at", "request_sent_at")
    )
    for task_id, claim, claimed_at, sent_at in list(stuck):
        # Each move holds to the claim read here: a worker that moved on since (or a sweep
        # running beside this one) wins, and the move takes the claim over, so the worker,
        # should it wake up, can neither send nor record.
        if sent_at and sent_at >= claimed_at:
            moved = mark_unconfirmed(
                task_id,
                _("the worker stopped while waiting for HiDream's answer"),
                claim=claim,
                take_over=True,
            )
        else:
            from ..tasks import submit_model_image

            with transaction.atomic():
                # Never sent: unless the worker marked it sent since the list was read.
                moved = transitions.move(
                    task_id,
                    TaskStatus.QUEUED,
                    expected=[TaskStatus.SUBMITTING],
                    fence=claim,
                    take_over=True,
                    where=Q(request_sent_at__isnull=True) | Q(request_sent_at__lt=claimed_at),
                    updated_at=now,  # the pass's clock, like every other test it makes
                )
                if moved:
                    enqueue_after_commit(submit_model_image, str(task_id))
        recovered += bool(moved)
    download_stale_before = now - timedelta(seconds=download_lease_seconds())
    stalled = GeneratedImage.objects.filter(
        status=ImageStatus.DOWNLOADING,
        next_attempt_at__isnull=True,
        updated_at__lt=download_stale_before,
    ).values_list("pk", flat=True)
    from ..tasks import download_generated_image

    for image_id in list(stalled):
        with transaction.atomic():
            GeneratedImage.objects.filter(pk=image_id).update(updated_at=now)
            enqueue_after_commit(download_generated_image, image_id)
        recovered += 1
    recovered += apply_unapplied_callbacks(now)
    return recovered
