"""Approving with publication, publishing and unpublishing pictures through the publisher.

A product has at most one generated picture as its main image: publishing a new main first
unpublishes the current one, so "unpublish" always restores exactly what the shop had before.
Putting a picture on a product, or taking one off, needs the product model's change
permission (``permissions``), whoever asks: the admin, the API or code passing a ``user``.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import GeneratedImage, ImageStatus, PublishTarget, ReviewState
from ..publishing import get_publisher
from ..signals import image_published, image_unpublished, send_after_commit
from .actions import HiDreamActionRefused
from .permissions import CHANGE, require_task_product_permission
from .review import review_image


def publish_image(image: GeneratedImage, target: str, *, user=None) -> GeneratedImage:
    """Publish an approved, stored picture to its product as ``target``."""
    publisher = get_publisher()
    if publisher is None:
        raise HiDreamActionRefused(
            _("Publishing is not set up: HIDREAM_PUBLISHER names no publisher.")
        )
    if target not in PublishTarget.values or target not in publisher.targets:
        raise HiDreamActionRefused(
            _("Cannot publish as “%(target)s”; choose one of: %(targets)s.")
            % {"target": target, "targets": ", ".join(publisher.targets)}
        )
    with transaction.atomic():
        image = GeneratedImage.objects.select_for_update().select_related("task").get(pk=image.pk)
        if image.status != ImageStatus.STORED or image.review_state != ReviewState.APPROVED:
            raise HiDreamActionRefused(_("Only stored, approved pictures can be published."))
        if not image.task.content_type_id:
            raise HiDreamActionRefused(_("This picture's task has no product to publish to."))
        require_task_product_permission(user, image.task, CHANGE)
        if image.published_as == target:
            return image
        if image.published_as:
            _unpublish_locked(image, user)
        if target == PublishTarget.MAIN:
            current = (
                GeneratedImage.objects.select_for_update()
                .select_related("task")
                .filter(
                    published_as=PublishTarget.MAIN,
                    task__content_type_id=image.task.content_type_id,
                    task__object_id=image.task.object_id,
                )
                .exclude(pk=image.pk)
            )
            for other in current:
                _unpublish_locked(other, user)
        state = publisher.publish(image, target)
        image.published_as = target
        image.published_at = timezone.now()
        image.publish_state = state or {}
        image.save(update_fields=["published_as", "published_at", "publish_state", "updated_at"])
        send_after_commit(image_published, GeneratedImage, image=image, target=target, user=user)
    return image


def unpublish_image(image: GeneratedImage, *, user=None) -> GeneratedImage:
    """Take a published picture off its product, restoring what was there before."""
    with transaction.atomic():
        image = GeneratedImage.objects.select_for_update().select_related("task").get(pk=image.pk)
        if not image.published_as:
            raise HiDreamActionRefused(_("This picture is not published."))
        _unpublish_locked(image, user)
    return image


def _unpublish_locked(image: GeneratedImage, user) -> None:
    require_task_product_permission(user, image.task, CHANGE)
    publisher = get_publisher()
    if publisher is None:
        raise HiDreamActionRefused(
            _("Unpublishing needs the publisher, but HIDREAM_PUBLISHER names none.")
        )
    publisher.unpublish(image, image.publish_state or {})
    image.published_as = ""
    image.published_at = None
    image.publish_state = {}
    image.save(update_fields=["published_as", "published_at", "publish_state", "updated_at"])
    send_after_commit(image_unpublished, GeneratedImage, image=image, user=user)


def approve_image(image: GeneratedImage, *, user=None, publish: str | None = None):
    """Approve a picture and, if ``publish`` names a target, publish it — all or nothing."""
    with transaction.atomic():
        image = review_image(image, user=user, state=ReviewState.APPROVED)
        if publish:
            image = publish_image(image, publish, user=user)
    return image


def reject_image(image: GeneratedImage, *, user=None) -> GeneratedImage:
    """Reject a picture; a published one is unpublished first."""
    with transaction.atomic():
        image = GeneratedImage.objects.select_for_update().get(pk=image.pk)
        if image.published_as:
            _unpublish_locked(image, user)
        return review_image(image, user=user, state=ReviewState.REJECTED)
