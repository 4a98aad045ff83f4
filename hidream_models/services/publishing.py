"""Approving with publication, publishing and unpublishing pictures through the publisher.

A product has at most one generated picture as its main image: publishing a new main first
unpublishes the current one, so "unpublish" always restores exactly what the shop had before.
Putting a picture on a product, or taking one off, needs the product model's change
permission (``permissions``), whoever asks: the admin, the API or code passing a ``user``.

All or nothing: each change runs in one transaction that first locks the product's row, then
the pictures (always in that order, so two changes of one product wait for each other instead
of deadlocking, and the current main image is read under the lock); the publisher's copies are
deleted only after the commit, and a publish that raises leaves rows and files as they were.
A published picture cannot be deleted (``signals``): ``unpublish_and_delete`` does both.
"""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import files
from ..models import GeneratedImage, ImageStatus, ModelImageTask, PublishTarget, ReviewState
from ..publishing import get_publisher
from ..signals import image_published, image_unpublished, send_after_commit
from .actions import HiDreamActionRefused
from .permissions import CHANGE, require_task_product_permission
from .review import review_image


def lock_product(image: GeneratedImage) -> bool:
    """Lock the row of ``image``'s product until the transaction ends (``select_for_update``);
    returns whether the product exists. Call it inside ``transaction.atomic`` before locking
    or reading any picture of the product."""
    task = (
        ModelImageTask.objects.filter(pk=image.task_id)
        .values_list("content_type_id", "object_id")
        .first()
    )
    if task is None or not task[0]:
        return False
    model = ContentType.objects.get_for_id(task[0]).model_class()
    if model is None:  # a product model since removed from the project
        return False
    try:
        return bool(
            list(model._base_manager.select_for_update().filter(pk=task[1]).values_list("pk"))
        )
    except (ValueError, TypeError, OverflowError, ValidationError):  # not a key of that model
        return False


def _locked(image: GeneratedImage) -> GeneratedImage:
    """The picture's row, locked; refused when it was deleted meanwhile."""
    locked = (
        GeneratedImage.objects.select_for_update().select_related("task").filter(pk=image.pk)
    ).first()
    if locked is None:
        raise HiDreamActionRefused(_("This picture no longer exists; it was deleted."))
    return locked


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
    with files.tracking_new_copies() as copies, transaction.atomic():
        product_exists = lock_product(image)
        image = _locked(image)
        if image.status != ImageStatus.STORED or image.review_state != ReviewState.APPROVED:
            raise HiDreamActionRefused(_("Only stored, approved pictures can be published."))
        if not image.task.content_type_id:
            raise HiDreamActionRefused(_("This picture's task has no product to publish to."))
        require_task_product_permission(user, image.task, CHANGE)
        if not product_exists:
            raise HiDreamActionRefused(
                _("This picture's product no longer exists: there is nothing to publish it on.")
            )
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
        state = dict(publisher.publish(image, target) or {})
        if copies:  # recorded for the unpublish, and so that no sweep takes them for orphans
            state[files.STATE_FILES] = [*files.state_files(state), *copies]
        image.published_as = target
        image.published_at = timezone.now()
        image.publish_state = state
        image.save(update_fields=["published_as", "published_at", "publish_state", "updated_at"])
        send_after_commit(image_published, GeneratedImage, image=image, target=target, user=user)
    return image


def unpublish_image(image: GeneratedImage, *, user=None) -> GeneratedImage:
    """Take a published picture off its product, restoring what was there before."""
    with transaction.atomic():
        lock_product(image)
        image = _locked(image)
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
    state = image.publish_state or {}
    publisher.unpublish(image, state)
    # After the commit: a rolled-back unpublish keeps the product on a file that still exists.
    files.delete_unreferenced_after_commit(files.state_files(state))
    image.published_as = ""
    image.published_at = None
    image.publish_state = {}
    image.save(update_fields=["published_as", "published_at", "publish_state", "updated_at"])
    send_after_commit(image_unpublished, GeneratedImage, image=image, user=user)


def approve_image(image: GeneratedImage, *, user=None, publish: str | None = None):
    """Approve a picture and, if ``publish`` names a target, publish it — all or nothing."""
    with transaction.atomic():
        if publish:  # the product before the picture, as publish_image locks them
            lock_product(image)
        image = review_image(image, user=user, state=ReviewState.APPROVED)
        if publish:
            image = publish_image(image, publish, user=user)
    return image


def reject_image(image: GeneratedImage, *, user=None) -> GeneratedImage:
    """Reject a picture; a published one is unpublished first."""
    with transaction.atomic():
        lock_product(image)
        image = _locked(image)
        if image.published_as:
            _unpublish_locked(image, user)
        return review_image(image, user=user, state=ReviewState.REJECTED)


def unpublish_and_delete(obj: ModelImageTask | GeneratedImage, *, user=None) -> None:
    """Unpublish a picture (or every published picture of a task), then delete it: all or
    nothing. Unpublishing needs the product's change permission, as ``unpublish_image`` does;
    the app's files that no other row names are deleted after the commit (``signals``)."""
    with transaction.atomic():
        if isinstance(obj, GeneratedImage):
            pictures = GeneratedImage.objects.filter(pk=obj.pk)
        else:
            pictures = GeneratedImage.objects.filter(task_id=obj.pk)
        for image in pictures.exclude(published_as="").order_by("pk"):
            unpublish_image(image, user=user)
        type(obj).objects.filter(pk=obj.pk).delete()
