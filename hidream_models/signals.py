"""Signals the app sends, always after the database change has been committed.

Receivers get ``sender`` (the model class) and the keyword named below. They are called with
``send_robust``: an exception in one receiver is logged and does not stop the others, nor the
task that sent it.

``task_submitted(task)``  HiDream accepted a task (``task.remote_task_id`` is set).
``task_finished(task)``   a task reached ``succeeded``, ``partial`` or ``failed``.
``image_ready(image)``    a generated picture is stored in the shop's storage.
``image_approved(image, user)`` / ``image_rejected(image, user)``  a person reviewed a picture.
``image_published(image, target, user)``  the publisher put a picture on its product
                                          (target "gallery" or "main").
``image_unpublished(image, user)``        the publisher took it off again.

The app also listens to Django's delete signals of its own models: a published picture (or a
task with one) cannot be deleted until it is unpublished (``ProtectedError``: the storefront
would keep an AI picture with nothing left to restore the original), and deleting a task or
picture deletes, after the commit, the app's files it named that no other row names.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import ProtectedError
from django.db.models.signals import post_delete, pre_delete
from django.dispatch import Signal
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

task_submitted = Signal()
task_finished = Signal()
image_ready = Signal()
image_approved = Signal()
image_rejected = Signal()
image_published = Signal()
image_unpublished = Signal()


def send_after_commit(signal: Signal, sender: type, **kwargs) -> None:
    """Send ``signal`` robustly once the surrounding transaction commits (now if none)."""

    def send() -> None:
        for receiver, result in signal.send_robust(sender=sender, **kwargs):
            if isinstance(result, Exception):
                logger.error(
                    "hidream_models signal receiver %r failed",
                    receiver,
                    exc_info=(type(result), result, result.__traceback__),
                )

    transaction.on_commit(send, robust=True)


def refuse_deleting_published(sender, instance, **kwargs) -> None:
    """``pre_delete`` of a picture: refuse while it is published. The row is read again under
    a lock, so a publish that committed after the delete collected the picture still counts,
    and one that comes later waits for the delete and finds no picture."""
    published = list(
        sender._default_manager.select_for_update()
        .filter(pk=instance.pk)
        .exclude(published_as="")
        .values_list("pk", flat=True)
    )
    if published:
        raise ProtectedError(
            _(
                "Picture #%(n)s of “%(product)s” is published on its product: unpublish it "
                "before deleting it (the admin's “Unpublish and delete” does both)."
            )
            % {"n": instance.position + 1, "product": instance.task.product_label},
            [instance],
        )


def delete_files_after_commit(sender, instance, **kwargs) -> None:
    """``post_delete`` of a task or picture: its files of the app (results, uploads) go after
    the commit, unless another row names them (a retry shares its original's upload)."""
    from .files import delete_unreferenced_after_commit

    names = [
        getattr(instance, column).name
        for column in ("file", "source_image", "mask")
        if hasattr(instance, column)
    ]
    delete_unreferenced_after_commit(name for name in names if name)


pre_delete.connect(
    refuse_deleting_published,
    sender="hidream_models.GeneratedImage",
    dispatch_uid="hidream_models.refuse_deleting_published",
)
for _model in ("hidream_models.GeneratedImage", "hidream_models.ModelImageTask"):
    post_delete.connect(
        delete_files_after_commit, sender=_model, dispatch_uid=f"{_model}.delete_files"
    )
