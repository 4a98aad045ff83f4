"""Staff actions on existing tasks: refresh from HiDream, and retry."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ..models import REMOTE_TASK_STATUSES, ModelImageTask, TaskStatus
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


def retry_task(task: ModelImageTask, *, user=None, resend_unconfirmed: bool = False):
    """Submit the same product and options again, as a new task.

    An unconfirmed task may already be generating (and billed) at HiDream, so it is only
    resent when the caller says so explicitly with ``resend_unconfirmed``.
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
    if existing is None:
        try:
            return copy_for_retry(task, user=user)
        except IntegrityError:
            # Another request made the retry between the look and the insert: the database's
            # one-retry constraint refused this one, so nothing was created or enqueued.
            existing = task.retries.first()
            if existing is None:
                raise
    raise HiDreamAlreadyRetried(task, existing)
