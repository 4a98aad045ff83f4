"""``GeneratedImage``: one picture (one HiDream sub-task), its copy in the shop's storage,
its review and its publication."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from .tasks import ModelImageTask


class ImageStatus(models.TextChoices):
    """States of one picture: waiting on HiDream, being copied, stored, or failed."""

    PENDING = "pending", _("Generating")
    DOWNLOADING = "downloading", _("Copying to storage")
    STORED = "stored", _("Stored")
    FAILED = "failed", _("Failed")


FINAL_IMAGE_STATUSES = frozenset({ImageStatus.STORED, ImageStatus.FAILED})


class ReviewState(models.TextChoices):
    UNREVIEWED = "unreviewed", _("Unreviewed")
    APPROVED = "approved", _("Approved")
    REJECTED = "rejected", _("Rejected")


class PublishTarget(models.TextChoices):
    """Where an approved picture can be published on the product."""

    GALLERY = "gallery", _("Product gallery")
    MAIN = "main", _("Main product image")


class GeneratedImage(models.Model):
    """One generated picture: a HiDream sub-task and, once copied, the file in our storage."""

    task = models.ForeignKey(
        ModelImageTask,
        on_delete=models.CASCADE,
        related_name="images",
        help_text=_("The task this picture belongs to."),
        verbose_name=_("task"),
    )
    sub_task_id = models.CharField(
        max_length=128, help_text=_("HiDream's sub_task_id."), verbose_name=_("HiDream sub-task id")
    )
    position = models.PositiveSmallIntegerField(
        default=0,
        help_text=_("Order of the sub-task within the task."),
        verbose_name=_("position"),
    )
    status = models.CharField(
        max_length=16,
        choices=ImageStatus.choices,
        default=ImageStatus.PENDING,
        db_index=True,
        help_text=_("Where this picture is: generating, copying, stored or failed."),
        verbose_name=_("status"),
    )
    remote_status = models.IntegerField(
        null=True,
        blank=True,
        help_text=_("HiDream's task_status code for this sub-task."),
        verbose_name=_("remote status"),
    )
    progress = models.FloatField(
        default=0.0, help_text=_("HiDream's task_completion, 0 to 1."), verbose_name=_("progress")
    )
    remote_url = models.URLField(
        max_length=2000,
        blank=True,
        help_text=_("Where HiDream serves the result."),
        verbose_name=_("HiDream URL"),
    )
    file = models.FileField(
        upload_to="hidream/",
        blank=True,
        max_length=500,
        help_text=_("The copy in our storage."),
        verbose_name=_("file"),
    )
    width = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Width in pixels."), verbose_name=_("width")
    )
    height = models.PositiveIntegerField(
        null=True, blank=True, help_text=_("Height in pixels."), verbose_name=_("height")
    )
    bytes = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text=_("Size of the stored file in bytes."),
        verbose_name=_("size (bytes)"),
    )
    failure_reason = models.TextField(
        blank=True,
        help_text=_("Why the picture failed, in plain words."),
        verbose_name=_("failure reason"),
    )
    download_attempts = models.PositiveIntegerField(
        default=0,
        help_text=_("Download attempts made so far."),
        verbose_name=_("download attempts"),
    )
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the next download attempt is due."),
        verbose_name=_("next attempt at"),
    )
    raw_result = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("HiDream's last sub-task result, as received."),
        verbose_name=_("raw result"),
    )
    review_state = models.CharField(
        max_length=16,
        choices=ReviewState.choices,
        default=ReviewState.UNREVIEWED,
        db_index=True,
        help_text=_("Whether a person approved or rejected this picture."),
        verbose_name=_("review state"),
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text=_("Who reviewed the picture."),
        verbose_name=_("reviewed by"),
    )
    reviewed_at = models.DateTimeField(
        null=True, blank=True, help_text=_("When it was reviewed."), verbose_name=_("reviewed at")
    )
    published_as = models.CharField(
        max_length=16,
        choices=[("", _("Not published")), *PublishTarget.choices],
        blank=True,
        default="",
        db_index=True,
        help_text=_("Where the shop shows this picture: the product gallery, or as main image."),
        verbose_name=_("published as"),
    )
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When it was published."),
        verbose_name=_("published at"),
    )
    publish_state = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("What the publisher needs to undo the publication exactly."),
        verbose_name=_("publish state"),
    )
    created_at = models.DateTimeField(
        auto_now_add=True, help_text=_("Created."), verbose_name=_("created at")
    )
    updated_at = models.DateTimeField(
        auto_now=True, help_text=_("Last changed."), verbose_name=_("updated at")
    )
    stored_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the file reached our storage."),
        verbose_name=_("stored at"),
    )

    class Meta:
        verbose_name = _("generated image")
        verbose_name_plural = _("generated images")
        ordering = ["task", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "sub_task_id"], name="hidream_image_unique_sub_task"
            )
        ]

    def __str__(self) -> str:
        return f"{self.task.product_label} #{self.position + 1} · {self.get_status_display()}"

    @property
    def number(self) -> int:
        return self.position + 1

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_IMAGE_STATUSES
