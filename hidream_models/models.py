"""The app's data: a task per product and run, a picture per sub-task, every callback received.

``ModelImageTask`` snapshots what was sent, so a task explains itself after the product has
changed. ``GeneratedImage`` is one picture (one HiDream sub-task). ``CallbackEvent`` keeps each
callback body as it came, in the style of dj-stripe's webhook log.
"""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils.translation import gettext_lazy as _


def new_callback_token() -> str:
    # 32 bytes of randomness (256 bits), URL-safe: the only key to a task's callback URL.
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
    callback_token = models.CharField(
        max_length=64,
        default=new_callback_token,
        editable=False,
        help_text=_("Secret part of this task's callback URL. Never shown."),
        verbose_name=_("callback token"),
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
    idempotency_key = models.CharField(
        max_length=255,
        blank=True,
        default="",
        help_text=_("The API client's Idempotency-Key, so a retried create returns this task."),
        verbose_name=_("idempotency key"),
    )
    retry_of = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="retries",
        help_text=_("The task this one retries, if any."),
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
            models.UniqueConstraint(
                fields=["created_by", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="hidream_task_unique_idempotency_key",
            )
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


class CallbackOutcome(models.TextChoices):
    RECEIVED = "received", _("Received")
    APPLIED = "applied", _("Applied")
    UNCHANGED = "unchanged", _("Applied, nothing new")
    INVALID = "invalid", _("Invalid body")
    ERROR = "error", _("Error while applying")


class CallbackEvent(models.Model):
    """A callback HiDream delivered for a task, stored before it is applied."""

    task = models.ForeignKey(
        ModelImageTask,
        on_delete=models.CASCADE,
        related_name="callback_events",
        help_text=_("The task the callback URL named."),
        verbose_name=_("task"),
    )
    received_at = models.DateTimeField(
        auto_now_add=True, db_index=True, help_text=_("Arrival."), verbose_name=_("received at")
    )
    remote_addr = models.GenericIPAddressField(
        null=True,
        blank=True,
        help_text=_("Address the callback came from."),
        verbose_name=_("remote address"),
    )
    headers = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Request headers, secrets removed."),
        verbose_name=_("headers"),
    )
    body = models.TextField(
        blank=True, help_text=_("The body as received."), verbose_name=_("body")
    )
    outcome = models.CharField(
        max_length=16,
        choices=CallbackOutcome.choices,
        default=CallbackOutcome.RECEIVED,
        help_text=_("What processing made of it."),
        verbose_name=_("outcome"),
    )
    error = models.TextField(
        blank=True, help_text=_("Why it was invalid or failed."), verbose_name=_("error")
    )

    class Meta:
        verbose_name = _("callback event")
        verbose_name_plural = _("callback events")
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} · {self.get_outcome_display()}"


class TemplateKind(models.TextChoices):
    HUMAN = "human", _("Model (human)")
    SCENE = "scene", _("Scene")


class HiDreamTemplate(models.Model):
    """A human or scene template offered by HiDream, synced into the shop's database.

    Templates that disappear from HiDream are deactivated, never deleted: old tasks still
    name them.
    """

    kind = models.CharField(
        max_length=8,
        choices=TemplateKind.choices,
        help_text=_("Human (model) or scene."),
        verbose_name=_("kind"),
    )
    remote_id = models.CharField(
        max_length=128, help_text=_("HiDream's template id."), verbose_name=_("HiDream id")
    )
    name_en = models.CharField(
        max_length=200, blank=True, help_text=_("English name."), verbose_name=_("name (English)")
    )
    name_zh = models.CharField(
        max_length=200, blank=True, help_text=_("Chinese name."), verbose_name=_("name (Chinese)")
    )
    gender = models.CharField(
        max_length=16,
        blank=True,
        help_text=_("Woman or Man (human templates)."),
        verbose_name=_("gender"),
    )
    scenes_type = models.CharField(
        max_length=32,
        blank=True,
        help_text=_("indoor scenes or outdoor scenes (scene templates)."),
        verbose_name=_("scene type"),
    )
    region = models.CharField(
        max_length=64,
        blank=True,
        help_text=_("Region (scene templates)."),
        verbose_name=_("region"),
    )
    remote_preview_url = models.URLField(
        max_length=2000,
        blank=True,
        help_text=_("HiDream's preview image URL."),
        verbose_name=_("HiDream preview URL"),
    )
    preview = models.FileField(
        upload_to="hidream/templates/",
        blank=True,
        max_length=500,
        help_text=_("The preview image, copied into the shop's storage."),
        verbose_name=_("preview"),
    )
    is_active = models.BooleanField(
        default=True,
        help_text=_("Offered by HiDream at the last sync."),
        verbose_name=_("active"),
    )
    extra = models.JSONField(
        default=dict,
        blank=True,
        help_text=_("Every field HiDream sent, as received."),
        verbose_name=_("extra"),
    )
    synced_at = models.DateTimeField(
        null=True, blank=True, help_text=_("Last seen at a sync."), verbose_name=_("synced at")
    )

    class Meta:
        verbose_name = _("HiDream template")
        verbose_name_plural = _("HiDream templates")
        ordering = ["kind", "remote_id"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "remote_id"], name="hidream_template_unique")
        ]

    def __str__(self) -> str:
        return self.display_name()

    @property
    def gender_label(self) -> str:
        """HiDream's gender value in the user's language (unknown values as they came)."""
        return {"woman": _("Woman"), "man": _("Man")}.get(self.gender.lower(), self.gender)

    @property
    def scenes_type_label(self) -> str:
        """HiDream's scene type in the user's language (unknown values as they came)."""
        return {"indoor scenes": _("Indoor"), "outdoor scenes": _("Outdoor")}.get(
            self.scenes_type.lower(), self.scenes_type
        )

    def display_name(self, language: str | None = None) -> str:
        """The name in the given (or active) language, falling back to the other one."""
        from django.utils.translation import get_language

        language = (language or get_language() or "en").lower()
        first, second = (
            (self.name_zh, self.name_en)
            if language.startswith("zh")
            else (self.name_en, self.name_zh)
        )
        return first or second or self.remote_id


class HiDreamPreset(models.Model):
    """Named, reusable generation settings, so a brand keeps the same model and scene."""

    name = models.CharField(
        max_length=100, unique=True, help_text=_("Shown in pickers."), verbose_name=_("name")
    )
    description = models.CharField(
        max_length=300,
        blank=True,
        help_text=_("What this look is for, for colleagues."),
        verbose_name=_("description"),
    )
    mode = models.CharField(
        max_length=16,
        choices=GenerationMode.choices,
        default=GenerationMode.TEMPLATE,
        help_text=_("Generate from a template pair or from a prompt."),
        verbose_name=_("mode"),
    )
    human_template = models.ForeignKey(
        HiDreamTemplate,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        limit_choices_to={"kind": TemplateKind.HUMAN},
        help_text=_("The model (template mode)."),
        verbose_name=_("human template"),
    )
    scene_template = models.ForeignKey(
        HiDreamTemplate,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        limit_choices_to={"kind": TemplateKind.SCENE},
        help_text=_("The scene (template mode)."),
        verbose_name=_("scene template"),
    )
    prompt = models.TextField(
        blank=True, help_text=_("The prompt (prompt mode), ≤ 500 chars."), verbose_name=_("prompt")
    )
    image_count = models.PositiveSmallIntegerField(
        default=2,
        help_text=_("Pictures per product (1–4)."),
        verbose_name=_("image count"),
    )
    is_active = models.BooleanField(
        default=True, help_text=_("Offered in pickers."), verbose_name=_("active")
    )
    created_at = models.DateTimeField(
        auto_now_add=True, help_text=_("Created."), verbose_name=_("created at")
    )
    updated_at = models.DateTimeField(
        auto_now=True, help_text=_("Last changed."), verbose_name=_("updated at")
    )

    class Meta:
        verbose_name = _("generation preset")
        verbose_name_plural = _("generation presets")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def as_request(self) -> dict:
        """The options in request shape, for ``GenerationOptions.validated``."""
        data: dict = {"image_count": self.image_count}
        if self.mode == GenerationMode.TEMPLATE:
            data["template"] = {
                "human_template_id": self.human_template.remote_id if self.human_template else "",
                "scene_template_id": self.scene_template.remote_id if self.scene_template else "",
            }
        else:
            data["prompt"] = self.prompt
        return data

    def clean(self):
        from django.core.exceptions import ValidationError

        from .exceptions import HiDreamValidationError
        from .services import GenerationOptions

        try:
            GenerationOptions.validated(self.as_request())
        except HiDreamValidationError as exc:
            fields = {
                "template.human_template_id": "human_template",
                "template.scene_template_id": "scene_template",
                "prompt": "prompt",
                "image_count": "image_count",
            }
            raise ValidationError(
                {fields.get(key, "__all__"): messages for key, messages in exc.errors.items()}
            ) from None


class HiDreamRequestSlot(models.Model):
    """One of ``HIDREAM_MAX_CONCURRENT_REQUESTS`` leases on talking to HiDream.

    A worker takes a free (or expired) slot with one conditional UPDATE before each API call
    and frees it after, so the limit holds across processes and machines; a lease expires on
    its own if its worker dies.
    """

    number = models.PositiveSmallIntegerField(
        unique=True, verbose_name=_("number"), help_text=_("Slot number, 1 to the limit.")
    )
    holder = models.CharField(
        max_length=64, blank=True, verbose_name=_("holder"), help_text=_("Who holds it now.")
    )
    leased_until = models.DateTimeField(
        null=True,
        blank=True,
        verbose_name=_("leased until"),
        help_text=_("When the lease ends even if it is never freed."),
    )

    class Meta:
        verbose_name = _("request slot")
        verbose_name_plural = _("request slots")

    def __str__(self) -> str:
        return f"#{self.number}"


class HiDreamRateReservation(models.Model):
    """Pictures booked for submission at a moment, for ``HIDREAM_MAX_IMAGES_PER_MINUTE``.

    Bookings may lie in the future: the pacer books each task the earliest moment its
    pictures fit in the window, and the task is submitted then.
    """

    send_at = models.DateTimeField(
        db_index=True, verbose_name=_("send at"), help_text=_("When the pictures are sent.")
    )
    pictures = models.PositiveSmallIntegerField(
        verbose_name=_("pictures"), help_text=_("How many pictures the submission asks for.")
    )
    task = models.OneToOneField(
        ModelImageTask,
        on_delete=models.CASCADE,
        related_name="rate_reservation",
        verbose_name=_("task"),
        help_text=_("The task the booking is for."),
    )

    class Meta:
        verbose_name = _("rate reservation")
        verbose_name_plural = _("rate reservations")

    def __str__(self) -> str:
        return f"{self.pictures} @ {self.send_at:%H:%M:%S}"
