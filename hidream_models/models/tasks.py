"""``ModelImageTask``: one submission to HiDream, a snapshot of what was sent, and its state
(DESIGN §4)."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _

from ..tokens import callback_token


def new_callback_token() -> str:
    # Historical: the random token tasks stored before it became an HMAC (``tokens``).
    # Migrations 0001 and 0004 name it as a field default, so it stays importable.
    return secrets.token_urlsafe(32)


class TaskStatus(models.TextChoices):
    """States of ``ModelImageTask`` (DESIGN §4); the last three are final."""

    QUEUED = "queued", _("Queued")
    SUBMITTING = "submitting", _("Submitting")
    UNCONFIRMED = "unconfirmed", _("Sent, not confirmed")
    SUBMITTED = "submitted", _("Submitted")
    PROCESSING = "processing", _("Processing")
    SUCCEEDED = "succeeded", _("Succeeded")
    PARTIAL = "partial", _("Partly succeeded")
    FAILED = "failed", _("Failed")


FINAL_TASK_STATUSES = frozenset({TaskStatus.SUCCEEDED, TaskStatus.PARTIAL, TaskStatus.FAILED})
REMOTE_TASK_STATUSES = frozenset({TaskStatus.SUBMITTED, TaskStatus.PROCESSING})


class GenerationMode(models.TextChoices):
    TEMPLATE = "template", _("Template")
    PROMPT = "prompt", _("Prompt")


class ModelImageTask(models.Model):
    """One submission to HiDream: a product image turned into ``image_count`` pictures."""

    id = models.UUIDField(
        primary_key=True,
        default=uuid.uuid4,
        editable=False,
        help_text=_("Our own task id."),
        verbose_name=_("id"),
    )
    content_type = models.ForeignKey(
        ContentType,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        help_text=_("The model of the product this task is for."),
        verbose_name=_("product type"),
    )
    object_id = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("The primary key of the product."),
        verbose_name=_("product id"),
    )
    product = GenericForeignKey("content_type", "object_id")
    product_label = models.CharField(
        max_length=300,
        blank=True,
        db_index=True,
        help_text=_("The product's name when the task was created (for lists and search)."),
        verbose_name=_("product label"),
    )
    batch = models.UUIDField(
        null=True,
        blank=True,
        db_index=True,
        help_text=_("Tasks created together by one action or API call share this id."),
        verbose_name=_("batch"),
    )

    mode = models.CharField(
        max_length=16,
        choices=GenerationMode.choices,
        help_text=_("Generate from a template pair or from a prompt."),
        verbose_name=_("mode"),
    )
    prompt = models.TextField(
        blank=True, help_text=_("The prompt sent (prompt mode)."), verbose_name=_("prompt")
    )
    human_template_id = models.CharField(
        max_length=128,
        blank=True,
        help_text=_("HiDream human (model) template id sent."),
        verbose_name=_("human template id"),
    )
    scene_template_id = models.CharField(
        max_length=128,
        blank=True,
        help_text=_("HiDream scene template id sent."),
        verbose_name=_("scene template id"),
    )
    custom_human_template = models.BooleanField(
        default=False,
        help_text=_("Whether the human template is a custom one."),
        verbose_name=_("custom human template"),
    )
    image_count = models.PositiveSmallIntegerField(
        default=1,
        help_text=_("How many pictures were asked for (1–4)."),
        verbose_name=_("image count"),
    )
    mask = models.FileField(
        upload_to="hidream/masks/",
        blank=True,
        max_length=500,
        help_text=_("Optional custom mask sent with the image."),
        verbose_name=_("mask"),
    )
    source_image = models.FileField(
        upload_to="hidream/sources/",
        blank=True,
        max_length=500,
        help_text=_("Storage name of the image that was (or will be) sent."),
        verbose_name=_("source image"),
    )
    source_url = models.URLField(
        max_length=2000,
        blank=True,
        help_text=_("Image URL sent instead of a stored file."),
        verbose_name=_("source URL"),
    )
    source_mode = models.CharField(
        max_length=16,
        blank=True,
        help_text=_("How the image was sent: base64 or url."),
        verbose_name=_("source mode"),
    )
    source_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("SHA-256 of the image bytes sent."),
        verbose_name=_("source SHA-256"),
    )

    status = models.CharField(
        max_length=16,
        choices=TaskStatus.choices,
        default=TaskStatus.QUEUED,
        db_index=True,
        help_text=_("Where the task is in its life."),
        verbose_name=_("status"),
    )
    remote_task_id = models.CharField(
        max_length=128,
        unique=True,
        null=True,
        blank=True,
        help_text=_("HiDream's task_id, once it accepted the task."),
        verbose_name=_("HiDream task id"),
    )
    request_id = models.CharField(
        max_length=128,
        blank=True,
        help_text=_("HiDream's request_id of the submit."),
        verbose_name=_("HiDream request id"),
    )
    sub_task_ids = models.JSONField(
        default=list,
        blank=True,
        help_text=_("HiDream's sub_task_ids, one per picture."),
        verbose_name=_("HiDream sub-task ids"),
    )
    error_code = models.IntegerField(
        null=True,
        blank=True,
        help_text=_("HiDream's business code of the last error, if any."),
        verbose_name=_("error code"),
    )
    error_message = models.TextField(
        blank=True,
        help_text=_("The last error in plain words, for staff."),
        verbose_name=_("error message"),
    )
    attempts = models.PositiveIntegerField(
        default=0, help_text=_("Submit attempts made so far."), verbose_name=_("attempts")
    )
    claim = models.PositiveIntegerField(
        default=0,
        help_text=_(
            "Fencing number: raised each time a worker claims the task to send it; a worker "
            "whose number is no longer current can neither send nor record."
        ),
        verbose_name=_("claim"),
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="hidream_tasks",
        help_text=_("Who started the task."),
        verbose_name=_("created by"),
    )
    preset = models.ForeignKey(
        "HiDreamPreset",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="tasks",
        help_text=_("The preset the options came from; the options themselves are kept here."),
        verbose_name=_("preset"),
    )
    retry_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="retries",
        help_text=_("The task this one retries, if any. A task has at most one retry."),
        verbose_name=_("retry of"),
    )
    created_at = models.DateTimeField(
        auto_now_add=True, db_index=True, help_text=_("Created."), verbose_name=_("created at")
    )
    updated_at = models.DateTimeField(
        auto_now=True, help_text=_("Last changed."), verbose_name=_("updated at")
    )
    next_attempt_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the next submit attempt is due."),
        verbose_name=_("next attempt at"),
    )
    request_sent_at = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("request sent at"),
        help_text=_("When the submit request last left for HiDream (set before sending)."),
    )
    submitted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When HiDream accepted the task."),
        verbose_name=_("submitted at"),
    )
    last_polled_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When HiDream was last asked for the result."),
        verbose_name=_("last polled at"),
    )
    last_callback_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the last valid callback arrived."),
        verbose_name=_("last callback at"),
    )
    finished_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("When the task reached a final state."),
        verbose_name=_("finished at"),
    )

    class Meta:
        verbose_name = _("model image task")
        verbose_name_plural = _("model image tasks")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["content_type", "object_id"])]
        constraints = [
            # Each retry is a paid submit: two clicks, two workers or six API calls at once
            # make one retry, never more (a failed retry can be retried in its turn).
            models.UniqueConstraint(
                fields=["retry_of"],
                condition=models.Q(retry_of__isnull=False),
                name="hidream_task_one_retry",
            ),
        ]
        permissions = [
            ("generate", _("Can generate model images with HiDream")),
            ("review", _("Can review generated model images")),
        ]

    def __str__(self) -> str:
        # TaskStatus(...).label, not get_status_display(): this runs for every list row.
        return f"{self.product_label or _('(no product)')} · {TaskStatus(self.status).label}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_TASK_STATUSES

    @property
    def callback_token(self) -> str:
        """Secret part of this task's callback URL (an HMAC of its id); never shown."""
        return callback_token(self.pk)

    def sent_options(self) -> dict:
        """The generation options as sent to HiDream (without the image)."""
        if self.mode == GenerationMode.TEMPLATE:
            options = {
                "template": {
                    "human_template_id": self.human_template_id,
                    "scene_template_id": self.scene_template_id,
                    "custom_human_template": self.custom_human_template,
                }
            }
        else:
            options = {"prompt": self.prompt}
        options["image_count"] = self.image_count
        return options
