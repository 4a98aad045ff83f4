"""Applying HiDream's results, from a callback or a poll, and copying the pictures home.

``apply_result`` is the one function both paths call. It locks the task row (then its
pictures, always in that order), never moves a final state backwards, and only enqueues a
download for a picture that has just become ready, so duplicate, late or reordered deliveries
change nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import hidream_settings
from ..downloads import download_image
from ..exceptions import HiDreamDownloadError
from ..files import result_name, save_replacing
from ..models import (
    FINAL_TASK_STATUSES,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from ..payloads import (
    STATUS_DESCRIPTIONS,
    PayloadError,
    SubTaskResult,
    TaskResultPayload,
    is_success_status,
)
from ..signals import image_ready, send_after_commit, task_finished
from . import transitions
from .scheduling import backoff_seconds, enqueue_after_commit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyOutcome:
    """What ``apply_result`` did: whether anything changed, and the task's status after."""

    changed: bool
    status: str


def apply_result(task_id, payload: TaskResultPayload, *, source: str) -> ApplyOutcome:
    """Apply a task result (``source`` is "callback" or "poll") idempotently.

    Raises ``PayloadError`` when the payload names another HiDream task.
    """
    now = timezone.now()
    with transaction.atomic():
        task = ModelImageTask.objects.select_for_update().get(pk=task_id)
        if payload.task_id and task.remote_task_id and payload.task_id != task.remote_task_id:
            raise PayloadError(
                _("The result is for HiDream task %(theirs)s, but this task is %(ours)s.")
                % {"theirs": payload.task_id, "ours": task.remote_task_id}
            )
        if task.status == TaskStatus.QUEUED and not task.request_sent_at:
            raise PayloadError(_("This task has not been submitted yet."))
        # Queued but sent before (to be sent again after a lost answer): HiDream has it after
        # all, so the result is adopted and the resend, finding it no longer queued, is off.
        read_status = task.status
        if task.is_final:
            # The common duplicate (HiDream retries, polls after a callback): nothing can
            # change, so touch one column instead of locking and rewriting every picture.
            field = "last_callback_at" if source == "callback" else "last_polled_at"
            ModelImageTask.objects.filter(pk=task.pk).update(**{field: now})
            return ApplyOutcome(False, task.status)
        if not task.remote_task_id and payload.task_id:
            task.remote_task_id = payload.task_id  # the callback beat the submit's reply
        # Adopted without the submit's answer: it counts as submitted from when it was sent,
        # so polling and the deadline know about it should its last callback be lost.
        task.submitted_at = task.submitted_at or task.request_sent_at or now
        images = {image.sub_task_id: image for image in task.images.select_for_update()}
        to_download: list[GeneratedImage] = []
        changed = False
        for sub in payload.sub_task_results:
            image = images.get(sub.sub_task_id)
            if image is None:
                if task.sub_task_ids and sub.sub_task_id not in task.sub_task_ids:
                    logger.warning(
                        "Task %s: ignoring unknown sub-task %s", task.pk, sub.sub_task_id
                    )
                    continue
                image = GeneratedImage(
                    task=task, sub_task_id=sub.sub_task_id, position=_position(task, sub, images)
                )
                images[sub.sub_task_id] = image
            if _apply_sub_result(image, sub):
                changed = True
                image.save()
                if image.status == ImageStatus.DOWNLOADING:
                    to_download.append(image)
        if source == "callback":
            task.last_callback_at = now
        else:
            task.last_polled_at = now
        if not task.is_final:
            changed |= settle_status(task, list(images.values()))
        transitions.save_locked(task, read_status)
        from ..tasks import download_generated_image

        for image in to_download:
            enqueue_after_commit(download_generated_image, image.pk)
    return ApplyOutcome(changed, task.status)


def _position(task: ModelImageTask, sub: SubTaskResult, images: dict) -> int:
    if sub.sub_task_id in task.sub_task_ids:
        return task.sub_task_ids.index(sub.sub_task_id)
    return len(images)


def _apply_sub_result(image: GeneratedImage, sub: SubTaskResult) -> bool:
    """Update one picture from its sub-task result; True if anything changed."""
    if image.status != ImageStatus.PENDING:
        return False  # already downloading, stored or failed: nothing moves backwards
    before = (image.status, image.remote_status, image.progress, image.remote_url)
    image.raw_result = sub.raw
    image.remote_status = sub.task_status
    if not sub.is_final:
        # Unknown codes land here too: recorded, and polled again until the deadline.
        image.progress = max(image.progress, sub.task_completion)
    elif is_success_status(sub.task_status) and sub.image:
        image.progress = 1.0
        image.remote_url = sub.image
        image.status = ImageStatus.DOWNLOADING
    else:
        image.progress = 1.0
        image.status = ImageStatus.FAILED
        image.failure_reason = _failure_text(sub)
    return before != (image.status, image.remote_status, image.progress, image.remote_url)


def _failure_text(sub: SubTaskResult) -> str:
    if is_success_status(sub.task_status):
        return _("HiDream reported the picture done but gave no image URL.")
    known = STATUS_DESCRIPTIONS.get(sub.task_status, "")
    parts = [str(known)] if known else []
    if sub.description:
        parts.append(_("HiDream says: %(text)s") % {"text": sub.description})
    parts.append(_("(status %(code)s)") % {"code": sub.task_status})
    return " ".join(parts)


def settle_status(
    task: ModelImageTask, images: list[GeneratedImage], *, expected: int | None = None
) -> bool:
    """Derive the task's status from its pictures; True if it changed. Caller saves.

    ``expected`` is how many pictures must be final; by default HiDream's sub-task count.
    """
    if expected is None:
        expected = len(task.sub_task_ids) or task.image_count
    before = task.status
    finished = [image for image in images if image.is_final]
    if len(finished) >= expected and len(finished) == len(images):
        stored = sum(1 for image in images if image.status == ImageStatus.STORED)
        if stored == len(images):
            task.status = TaskStatus.SUCCEEDED
            task.error_message = ""
        elif stored == 0:
            task.status = TaskStatus.FAILED
            reasons = sorted({image.failure_reason for image in images if image.failure_reason})
            task.error_message = _("No picture could be made: %(reasons)s") % {
                "reasons": "; ".join(reasons)
            }
        else:
            task.status = TaskStatus.PARTIAL
            task.error_message = _("%(failed)s of %(total)s pictures failed.") % {
                "failed": len(images) - stored,
                "total": len(images),
            }
        task.finished_at = timezone.now()
        send_after_commit(task_finished, ModelImageTask, task=task)
    elif task.status in (
        TaskStatus.QUEUED,
        TaskStatus.SUBMITTING,
        TaskStatus.UNCONFIRMED,
        TaskStatus.SUBMITTED,
    ):
        task.status = TaskStatus.PROCESSING
    return task.status != before


def download_result(image_id) -> str | None:
    """Copy one ready picture into default storage (the body of the download job)."""
    image = GeneratedImage.objects.filter(pk=image_id, status=ImageStatus.DOWNLOADING).first()
    if image is None:
        return None
    attempts = image.download_attempts + 1
    GeneratedImage.objects.filter(pk=image.pk).update(
        download_attempts=attempts, next_attempt_at=None, updated_at=timezone.now()
    )
    try:
        downloaded = download_image(image.remote_url)
    except HiDreamDownloadError as exc:
        if exc.transient and attempts < hidream_settings.MAX_ATTEMPTS:
            return _retry_download(image, attempts, exc)
        return _finish_image(image.pk, failure=str(exc))
    with downloaded.file:
        name = result_name(image.task_id, image.sub_task_id, downloaded.checked.extension)
        # Verified in full before this line: storage only ever receives a checked file.
        saved = save_replacing(name, downloaded.file)
    return _finish_image(
        image.pk,
        saved_name=saved,
        size=downloaded.size,
        width=downloaded.checked.width,
        height=downloaded.checked.height,
    )


def _retry_download(image: GeneratedImage, attempts: int, exc: Exception) -> str:
    delay = backoff_seconds(attempts)
    GeneratedImage.objects.filter(pk=image.pk).update(
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
        failure_reason=_("Download attempt %(n)s failed, will retry: %(error)s")
        % {"n": attempts, "error": exc},
    )
    from ..tasks import download_generated_image

    with transaction.atomic():
        enqueue_after_commit(download_generated_image, image.pk, delay=delay)
    return ImageStatus.DOWNLOADING


def _finish_image(
    image_id, *, failure: str = "", saved_name: str = "", size=None, width=None, height=None
) -> str:
    with transaction.atomic():
        task_id = GeneratedImage.objects.values_list("task_id", flat=True).get(pk=image_id)
        task = ModelImageTask.objects.select_for_update().get(pk=task_id)
        image = GeneratedImage.objects.select_for_update().get(pk=image_id)
        if image.status != ImageStatus.DOWNLOADING:
            # Another worker finished it first; drop our copy unless it is the same file.
            if saved_name and saved_name != image.file.name:
                default_storage.delete(saved_name)
            return image.status
        if failure:
            image.status = ImageStatus.FAILED
            image.failure_reason = failure
        else:
            image.status = ImageStatus.STORED
            image.file.name = saved_name
            image.bytes, image.width, image.height = size, width, height
            image.failure_reason = ""
            image.stored_at = timezone.now()
            send_after_commit(image_ready, GeneratedImage, image=image)
        image.save()
        if task.status not in FINAL_TASK_STATUSES:
            read_status = task.status
            settle_status(task, list(task.images.all()))
            transitions.save_locked(task, read_status)
    return image.status
