"""Reviewing generated pictures: approve or reject, with who and when, and a signal."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..models import GeneratedImage, ImageStatus, ReviewState
from ..signals import image_approved, image_rejected, send_after_commit
from .actions import HiDreamActionRefused


def review_image(image: GeneratedImage, *, user, state: str) -> GeneratedImage:
    """Set a stored picture's review state (approved or rejected) and send the signal."""
    if state not in (ReviewState.APPROVED, ReviewState.REJECTED):
        raise ValueError(f"state must be approved or rejected, not {state!r}")
    with transaction.atomic():
        image = GeneratedImage.objects.select_for_update().get(pk=image.pk)
        if image.status != ImageStatus.STORED:
            raise HiDreamActionRefused(
                _("Only stored pictures can be reviewed; this one is %(status)s.")
                % {"status": image.get_status_display()}
            )
        image.review_state = state
        image.reviewed_by = user if getattr(user, "is_authenticated", False) else None
        image.reviewed_at = timezone.now()
        image.save(update_fields=["review_state", "reviewed_by", "reviewed_at", "updated_at"])
        signal = image_approved if state == ReviewState.APPROVED else image_rejected
        send_after_commit(signal, GeneratedImage, image=image, user=user)
    return image
