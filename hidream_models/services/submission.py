"""Submitting a queued task to HiDream, exactly once.

The task is claimed (``queued → submitting``) by a compare-and-set that raises its claim
number (``transitions``), so two workers racing on one task make one HTTP submit, and every
later step is fenced by that number: a worker whose claim the sweep took over (it outlived
its lease) neither sends nor records. Before sending, the task books its turn with the pacer and
takes a concurrent-request slot (``limits``); without either it goes back to the queue for
later, using up no attempt. What happens next depends on how the call ended:

- accepted: ``submitted``, with HiDream's task and sub-task ids;
- refused by a rule, a business ``code`` or a 4xx: ``failed`` with HiDream's words;
- throttled (429): back to the queue after ``Retry-After``, using up no attempt;
- never reached HiDream (connection refused, 5xx): back to ``queued`` and retried later
  with backoff and jitter, up to ``HIDREAM_MAX_ATTEMPTS``;
- sent but unanswered (read timeout, connection cut, a 200 that is not JSON):
  ``unconfirmed``. HiDream may have accepted, and billed, it: it is never resent silently,
  a person decides (DESIGN §4), unless ``HIDREAM_RESEND_UNCONFIRMED`` is on.
"""

from __future__ import annotations

import base64
import logging
import random
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from ..client import SubmitResult
from ..conf import hidream_settings
from ..exceptions import (
    HiDreamAPIError,
    HiDreamError,
    HiDreamHTTPError,
    HiDreamResponseError,
    HiDreamTimeoutError,
    HiDreamValidationError,
)
from ..images import ImageProblem, prepare_source
from ..models import GeneratedImage, ModelImageTask, TaskStatus
from ..signals import send_after_commit, task_finished, task_submitted
from . import transitions
from .clients import get_client
from .limits import book_submission, release_booking, request_slot
from .scheduling import backoff_seconds, enqueue_after_commit

# A booking this close to now is "now": not worth a round trip through the queue.
PACING_TOLERANCE = timedelta(milliseconds=5)

logger = logging.getLogger(__name__)


def callback_url(task: ModelImageTask) -> str | None:
    """The notify_url for a task, or None when no public callback base URL is configured."""
    base = hidream_settings.CALLBACK_BASE_URL
    if not base:
        return None
    path = reverse(
        "hidream_models:callback", kwargs={"task_id": task.pk, "token": task.callback_token}
    )
    return f"{base}{path}"


def claim_for_submission(task_id) -> ModelImageTask | None:
    """Move a queued task to ``submitting`` with a new claim; None if someone else has it."""
    return transitions.claim(task_id)


def submit_task(task_id) -> str | None:
    """Submit one queued task (the body of the ``submit`` background job).

    Returns the task's new status, or None when there was nothing to do.
    """
    task = claim_for_submission(task_id)
    if task is None:
        return None
    try:
        return _submit_claimed(task)
    except DatabaseError:
        # A database error (deadlock, lost connection) before anything was sent: put the
        # task back rather than leave it "submitting" until the sweep's lease runs out.
        sent = ModelImageTask.objects.filter(pk=task.pk, request_sent_at__gte=task.updated_at)
        if not sent.exists():
            _defer(task, timezone.now() + timedelta(seconds=random.uniform(0.5, 2)))
        raise


def _submit_claimed(task: ModelImageTask) -> str | None:
    # Pace first: a task whose turn has not come goes back to the queue until then.
    send_at = book_submission(task.pk, task.image_count)
    if send_at > timezone.now() + PACING_TOLERANCE:
        return _defer(task, send_at)
    try:
        hidream_settings.require_token()
        image = _image_value(task)
        mask = _mask_value(task)
    except (ImageProblem, ImproperlyConfigured) as exc:
        release_booking(task.pk)
        return _fail(task, str(exc))

    with request_slot() as got_slot:
        if not got_slot:  # all concurrent requests in use: come back in a moment
            return _defer(task, timezone.now() + timedelta(seconds=random.uniform(0.3, 1.5)))
        # Written before sending: a worker that dies after this line may have sent it. The
        # fence: a worker whose claim was taken over (it outlived its lease) stops here.
        if not transitions.still_holds(task, request_sent_at=timezone.now()):
            release_booking(task.pk)
            return None
        try:
            with get_client(holding_slot=True) as client:
                result = client.submit_model_image(
                    image=image,
                    mask=mask,
                    notify_url=callback_url(task),
                    **task.sent_options(),
                )
        except HiDreamValidationError as exc:
            release_booking(task.pk)
            return _fail(task, _("Not sent, HiDream's rules refuse it: %(error)s") % {"error": exc})
        except HiDreamTimeoutError as exc:
            if exc.request_sent:
                return mark_unconfirmed(task.pk, str(exc), claim=task.claim)
            release_booking(task.pk)
            return _retry_or_fail(task, exc)
        except HiDreamHTTPError as exc:
            release_booking(task.pk)
            if exc.status == 429:
                return _throttled(task, exc)
            if exc.status == 504:
                # A gateway gave up waiting for HiDream, which had the request by then.
                reason = _("a gateway answered HTTP 504 while HiDream had the request")
                return mark_unconfirmed(task.pk, reason, claim=task.claim)
            if exc.transient:
                return _retry_or_fail(task, exc)
            return _fail(task, str(exc))
        except HiDreamAPIError as exc:
            release_booking(task.pk)
            return _fail(task, str(exc), code=exc.code)
        except HiDreamResponseError as exc:
            # HTTP 200 but no readable envelope: HiDream may well have accepted it.
            return mark_unconfirmed(task.pk, str(exc), claim=task.claim)
        except HiDreamError as exc:
            if exc.transient:
                return _retry_or_fail(task, exc)
            return _fail(task, str(exc))
    return _record_submission(task, result)


def _defer(task: ModelImageTask, when, **fields) -> str | None:
    """Back to the queue until ``when``, without using up an attempt (pacing, busy slots)."""
    from ..tasks import submit_model_image

    with transaction.atomic():
        if not transitions.move(
            task.pk,
            TaskStatus.QUEUED,
            expected=[TaskStatus.SUBMITTING],
            fence=task.claim,
            attempts=max(0, task.attempts - 1),
            next_attempt_at=when,
            **fields,
        ):
            return None
        enqueue_after_commit(
            submit_model_image, str(task.pk), delay=(when - timezone.now()).total_seconds()
        )
    return TaskStatus.QUEUED


def _throttled(task: ModelImageTask, exc: HiDreamHTTPError) -> str | None:
    """HiDream said 429 (nothing was done): wait as it asks, without using up an attempt."""
    delay = backoff_seconds(1, exc.retry_after) + random.uniform(0, 0.5)
    logger.info("Task %s throttled by HiDream; again in %.1f s", task.pk, delay)
    return _defer(
        task,
        timezone.now() + timedelta(seconds=delay),
        error_message=_("HiDream is throttling this account; it will be sent again."),
    )


def _image_value(task: ModelImageTask) -> str:
    # Not task.save(): that would write every column read at the claim, status included,
    # over whatever another process did since.
    if task.source_url:
        ModelImageTask.objects.filter(pk=task.pk).update(source_mode="url")
        return task.source_url
    prepared = prepare_source(task.source_image.name, task.source_image.storage)
    ModelImageTask.objects.filter(pk=task.pk).update(
        source_mode=prepared.mode, source_sha256=prepared.sha256
    )
    return prepared.value


def _mask_value(task: ModelImageTask) -> str | None:
    if not task.mask:
        return None
    try:
        with task.mask.open("rb") as fh:
            return base64.b64encode(fh.read()).decode("ascii")
    except OSError as exc:
        raise ImageProblem(
            _("The mask file could not be read: %(error)s") % {"error": exc}
        ) from exc


def _record_submission(claimed: ModelImageTask, result: SubmitResult) -> str | None:
    """Record HiDream's acceptance, unless another worker holds the task now.

    With this worker's claim still current, it is recorded; a callback may have beaten the
    reply and moved the task on already, so the ids are recorded and the status stays.

    A worker whose claim was taken over records nothing over another's claim. One case is
    kept, as a fact no other path could learn: the sweep gave the task up as unconfirmed (or
    queued it to be sent again) and nobody holds it since, so the acceptance is recorded
    (``submitted``), and the resend, which would be billed a second time, is off.
    """
    with transaction.atomic():
        task = ModelImageTask.objects.select_for_update().get(pk=claimed.pk)
        given_up = (
            task.status in (TaskStatus.UNCONFIRMED, TaskStatus.QUEUED) and not task.remote_task_id
        )
        if task.claim != claimed.claim and not given_up:
            logger.warning(
                "Task %s: HiDream accepted it as %s, but this worker's claim %s was taken over "
                "(now %s, %s): not recorded; its callback, if one comes, still reaches the task",
                task.pk,
                result.task_id,
                claimed.claim,
                task.claim,
                task.status,
            )
            return None
        if task.remote_task_id and task.remote_task_id != result.task_id:
            # A callback of another send of this task (before a resend) was adopted first:
            # keep that one; this HiDream task has no app task to report to.
            logger.warning(
                "Task %s is HiDream task %s already; HiDream task %s, also accepted, is not "
                "recorded (a send whose answer had been given up on)",
                task.pk,
                task.remote_task_id,
                result.task_id,
            )
            return None
        read_status = task.status
        task.remote_task_id = result.task_id
        task.request_id = result.request_id
        task.sub_task_ids = list(result.sub_task_ids)
        task.submitted_at = task.submitted_at or timezone.now()
        task.error_code = None
        task.error_message = ""
        if task.status in (TaskStatus.SUBMITTING, TaskStatus.UNCONFIRMED, TaskStatus.QUEUED):
            task.status = TaskStatus.SUBMITTED
            task.next_attempt_at = None
        transitions.save_locked(task, read_status)
        GeneratedImage.objects.bulk_create(
            [
                GeneratedImage(task=task, sub_task_id=sub_task_id, position=position)
                for position, sub_task_id in enumerate(result.sub_task_ids)
            ],
            ignore_conflicts=True,
        )
        send_after_commit(task_submitted, ModelImageTask, task=task)
    logger.info("HiDream accepted task %s as %s", task.pk, result.task_id)
    return task.status


def _fail(task: ModelImageTask, message: str, *, code: int | None = None) -> str | None:
    """A claimed task that cannot be sent, or that HiDream refused: ``failed``, final."""
    with transaction.atomic():
        if not transitions.move(
            task.pk,
            TaskStatus.FAILED,
            expected=[TaskStatus.SUBMITTING],
            fence=task.claim,
            error_code=code,
            error_message=message,
            finished_at=timezone.now(),
        ):
            return None
        task = ModelImageTask.objects.get(pk=task.pk)
        send_after_commit(task_finished, ModelImageTask, task=task)
    logger.warning("Task %s failed: %s", task.pk, message)
    return task.status


def mark_unconfirmed(task_id, reason: str, *, claim: int, take_over: bool = False) -> str | None:
    """The request may have reached HiDream but no answer came: never resend it silently.

    With ``HIDREAM_RESEND_UNCONFIRMED`` the shop has chosen otherwise: it is queued again.
    Only while ``claim`` is the task's claim: a callback that already moved the task on, or
    a sweep that took it over, wins. ``take_over`` (the sweep) fences out the worker that
    held ``claim``. Returns the new status, or None when the task was not moved.
    """
    attempts = ModelImageTask.objects.filter(pk=task_id).values_list("attempts", flat=True).first()
    if hidream_settings.RESEND_UNCONFIRMED and (attempts or 0) < hidream_settings.MAX_ATTEMPTS:
        from ..tasks import submit_model_image

        # Each resend may be billed: back off, and stop at HIDREAM_MAX_ATTEMPTS.
        delay = backoff_seconds(attempts or 1)
        message = _(
            "No answer came (%(error)s); sent again because HIDREAM_RESEND_UNCONFIRMED is on."
        ) % {"error": reason}
        with transaction.atomic():
            if not transitions.move(
                task_id,
                TaskStatus.QUEUED,
                expected=[TaskStatus.SUBMITTING],
                fence=claim,
                take_over=take_over,
                error_message=message,
                next_attempt_at=timezone.now() + timedelta(seconds=delay),
            ):
                return None
            enqueue_after_commit(submit_model_image, str(task_id), delay=delay)
        release_booking(task_id)
        return TaskStatus.QUEUED
    message = _(
        "The request was sent but HiDream did not confirm it (%(error)s). It may still be "
        "generating, and billed. It is not resent automatically: use “Refresh” later, or "
        "“Retry” to send it again knowingly."
    ) % {"error": reason}
    if not transitions.move(
        task_id,
        TaskStatus.UNCONFIRMED,
        expected=[TaskStatus.SUBMITTING],
        fence=claim,
        take_over=take_over,
        error_message=message,
    ):
        return None
    logger.warning("Task %s is unconfirmed: %s", task_id, reason)
    return TaskStatus.UNCONFIRMED


def _retry_or_fail(task: ModelImageTask, exc: HiDreamError) -> str | None:
    if task.attempts >= hidream_settings.MAX_ATTEMPTS:
        return _fail(
            task,
            _("Gave up after %(n)s attempts. Last error: %(error)s")
            % {"n": task.attempts, "error": exc},
            code=getattr(exc, "code", None),
        )
    retry_after = exc.retry_after if isinstance(exc, HiDreamHTTPError) else None
    delay = backoff_seconds(task.attempts, retry_after)
    from ..tasks import submit_model_image

    with transaction.atomic():
        if not transitions.move(
            task.pk,
            TaskStatus.QUEUED,
            expected=[TaskStatus.SUBMITTING],
            fence=task.claim,
            error_message=_("Attempt %(n)s failed, will retry: %(error)s")
            % {"n": task.attempts, "error": exc},
            next_attempt_at=timezone.now() + timedelta(seconds=delay),
        ):
            return None
        enqueue_after_commit(submit_model_image, str(task.pk), delay=delay)
    logger.info(
        "Task %s attempt %s failed (%s); retry in %.1f s", task.pk, task.attempts, exc, delay
    )
    return TaskStatus.QUEUED
