"""HiDream's templates as synced into the shop, and the shop's named presets."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from .tasks import GenerationMode


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

        from ..exceptions import HiDreamValidationError
        from ..services import GenerationOptions

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
