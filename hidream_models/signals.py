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
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

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
