"""Staff actions on existing tasks: refresh from HiDream, and retry."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ..models import REMOTE_TASK_STATUSES, ModelImageTask, TaskStatus
from ..payloads import NO_RESULT_STATUSES, STATUS_MODERATED
from .creation import copy_for_retry
from .permissions import VIEW, require_task_product_permission
from .scheduling import enqueue_after_commit

RETRYABLE_STATUSES = frozenset({TaskStatus.FAILED, TaskStatus.PARTIAL, TaskStatus.UNCONFIRMED})


class HiDreamActionRefused(Exception):
    """The action does not apply to this task; ``str()`` says why, for staff."""


class HiDreamAlreadyRetried(HiDreamActionRefused):
    """The task has been retried already; ``retry`` is that retry (retry it, if it failed)."""

    def __init__(self, task: ModelImageTask, retry: ModelImageTask) -> None:
        super().__init__(
            _(
                "This task was retried already, as task %(retry)s (%(status)s); a task is "
                "retried once. If that retry failed too, retry it instead."
            )
            % {"retry": retry.pk, "status": retry.get_status_display()}
        )
        self.task = task
        self.retry = retry


class HiDreamRetryWouldFailAgain(HiDreamActionRefused):
    """The task failed for a reason a resend of the same request cannot mend; ``str()``
    says which. Retrying anyway is a knowing choice (``retry_task(..., anyway=True)``)."""


def failure_a_resend_cannot_mend(task: ModelImageTask) -> str | None:
    """Why sending the same request again would fail again (and cost credits), or None.

    HiDream refused the request itself (a business code: an invalid parameter, a template
    it does not offer), or its moderation rejected a picture, or the model produced none
    (HiDream says to try another prompt or template).
    """
    if task.error_code is not None:
        return _("HiDream refused the request itself (code %(code)s: %(message)s).") % {
            "code": task.error_code,
            "message": task.error_message or "-",
        }
    statuses = set(task.images.values_list("remote_status", flat=True))
    if STATUS_MODERATED in statuses:
        return _("HiDream's content moderation rejected a picture of it.")
    if statuses & NO_RESULT_STATUSES:
        return _("The model produced no result for it: try another prompt or template.")
    return None


def refresh_task(task: ModelImageTask) -> None:
    """Enqueue a poll of HiDream for this task (never inside the web request)."""
    if task.status not in REMOTE_TASK_STATUSES and task.status != TaskStatus.UNCONFIRMED:
        raise HiDreamActionRefused(
            _("Only tasks HiDream is working on can be refreshed; this one is %(status)s.")
            % {"status": task.get_status_display()}
        )
    if not task.remote_task_id:
        raise HiDreamActionRefused(
            _("HiDream never confirmed this task, so there is no HiDream task id to ask about.")
        )
    from ..tasks import sync_model_image_task

    with transaction.atomic():
        enqueue_after_commit(sync_model_image_task, str(task.pk))


def retry_task(
    task: ModelImageTask, *, user=None, resend_unconfirmed: bool = False, anyway: bool = False
):
    """Submit the same product and options again, as a new task.

    An unconfirmed task may already be generating (and billed) at HiDream, so it is only
    resent when the caller says so explicitly with ``resend_unconfirmed``. A task retried
    already is not retried again (``HiDreamAlreadyRetried``); one that failed for a reason the
    same request cannot mend only with ``anyway`` (``HiDreamRetryWouldFailAgain``).
    """
    if task.status not in RETRYABLE_STATUSES:
        raise HiDreamActionRefused(
            _(
                "Only failed, partly failed or unconfirmed tasks can be retried; this one is "
                "%(status)s."
            )
            % {"status": task.get_status_display()}
        )
    if task.status == TaskStatus.UNCONFIRMED and not resend_unconfirmed:
        raise HiDreamActionRefused(
            _(
                "This task was sent but never confirmed: HiDream may be generating (and billing) "
                "it already. Confirm explicitly to send it again."
            )
        )
    # A retry generates (and bills) pictures of the product: as creating them, it needs the
    # product model's view permission.
    require_task_product_permission(user, task, VIEW)
    existing = task.retries.first()
    if existing is not None:
        raise HiDreamAlreadyRetried(task, existing)
    reason = None if anyway else failure_a_resend_cannot_mend(task)
    if reason:
        raise HiDreamRetryWouldFailAgain(
            _(
                "%(reason)s The same request would most likely fail again, and cost credits: "
                "change the options and create a new task, or retry anyway knowingly."
            )
            % {"reason": reason}
        )
    try:
        return copy_for_retry(task, user=user)
    except IntegrityError:
        # Another request made the retry between the look and the insert: the database's
        # one-retry constraint refused this one, so nothing was created or enqueued.
        existing = task.retries.first()
        if existing is None:
            raise
    raise HiDreamAlreadyRetried(task, existing)
