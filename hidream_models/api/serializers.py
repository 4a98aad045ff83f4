"""API serializers. Request rules come from ``rules.ModelImageOptionsSerializer`` (shared with
the client and the admin form); these add what only the API has: product references, image
uploads/URLs/base64, and the output shapes. No output ever contains the callback token."""

from __future__ import annotations

import base64
import binascii

from django.utils.text import capfirst
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..conf import hidream_settings
from ..images import ImageProblem
from ..models import (
    GeneratedImage,
    HiDreamPreset,
    HiDreamTemplate,
    ModelImageTask,
    PublishTarget,
    ReviewState,
)
from ..rules import ModelImageOptionsSerializer, looks_like_url, normalise_image_value
from ..services import VerifiedUpload, verify_upload
from ..url_policy import URLRefused, check_given_url
from .references import parse_reference, product_reference

NULLABLE_URI = {"type": "string", "format": "uri", "nullable": True}


def _upload_too_large() -> str:
    limit = hidream_settings.MAX_UPLOAD_BYTES
    return _("The file is larger than %(n)s bytes (%(mb)s MB, HIDREAM_MAX_UPLOAD_BYTES).") % {
        "n": limit,
        "mb": round(limit / 2**20, 1),
    }


@extend_schema_field(OpenApiTypes.STR)
class ImageInputField(serializers.Field):
    """An image given as a multipart file, an http(s) URL, or base64 (``data:`` prefix ok).

    Returns ``("url", str)`` or ``("file", files.VerifiedUpload)``: a file is decoded whole
    by Pillow (within the pixel cap) here, and stored later under a name the app makes
    (``files.store_upload``), never under the name the person gave it.
    """

    default_error_messages = {
        "invalid": _("Send a file upload, an http(s) URL or a base64 string."),
    }

    def to_internal_value(self, data):
        if hasattr(data, "read"):  # an upload
            if getattr(data, "size", 0) > hidream_settings.MAX_UPLOAD_BYTES:
                raise serializers.ValidationError(_upload_too_large())
            return ("file", self._verified(data))
        if not isinstance(data, str):
            self.fail("invalid")
        if looks_like_url(data):
            # Read once, by the policy for URLs handed to HiDream (url_policy).
            try:
                url = check_given_url(data.strip())
            except URLRefused as exc:
                raise serializers.ValidationError(capfirst(str(exc))) from None
            limit = ModelImageTask._meta.get_field("source_url").max_length
            if len(url) > limit:
                raise serializers.ValidationError(
                    _("The URL is longer than %(n)s characters.") % {"n": limit}
                )
            return ("url", url)
        value = normalise_image_value(data, self.field_name)  # base64, checked
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            self.fail("invalid")
        if len(raw) > hidream_settings.MAX_UPLOAD_BYTES:
            raise serializers.ValidationError(_upload_too_large())
        return ("file", self._verified(raw))

    def _verified(self, data) -> VerifiedUpload:
        try:
            return verify_upload(data, _("The %(field)s") % {"field": self.field_name})
        except ImageProblem as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return value


class ProductReferenceField(serializers.CharField):
    """``app_label.model:pk``, e.g. ``catalog.product:3``."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        parse_reference(value)
        return value


class PresetOrOptionsMixin(serializers.Serializer):
    """A ``preset`` (id) instead of ``template``/``prompt``/``image_count``."""

    preset = serializers.PrimaryKeyRelatedField(
        queryset=HiDreamPreset.objects.filter(is_active=True),
        required=False,
        allow_null=True,
        help_text="Id of an active preset; its options replace template/prompt/image_count.",
    )

    def validate(self, attrs):
        if attrs.get("preset") is not None:
            if attrs.get("template") or attrs.get("prompt"):
                raise serializers.ValidationError(
                    {"preset": [_("Give a preset or template/prompt, not both.")]}
                )
            return attrs
        return super().validate(attrs)


class TaskCreateSerializer(PresetOrOptionsMixin, ModelImageOptionsSerializer):
    """Create one task: a ``product`` or an ``image``, plus a preset or generation options."""

    product = ProductReferenceField(
        required=False, help_text="app_label.model:pk, e.g. catalog.product:3"
    )
    image = ImageInputField(
        required=False,
        help_text="Instead of a product: a multipart file, an http(s) URL or base64.",
    )
    mask = ImageInputField(required=False, help_text="Optional mask: file, URL or base64.")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if bool(attrs.get("product")) == bool(attrs.get("image")):
            raise serializers.ValidationError(
                {"non_field_errors": [_("Give either a product or an image, not both.")]}
            )
        return attrs


class BulkCreateSerializer(PresetOrOptionsMixin, ModelImageOptionsSerializer):
    """Create tasks for many products with the same options, all or nothing."""

    products = serializers.ListField(
        child=ProductReferenceField(), min_length=1, max_length=1000, allow_empty=False
    )
    dry_run = serializers.BooleanField(
        default=False,
        help_text="Validate and count pictures and credits, create nothing.",
    )


class TaskRetrySerializer(serializers.Serializer):
    resend_unconfirmed = serializers.BooleanField(
        default=False,
        help_text="Required to resend a task HiDream may already be generating (and billing).",
    )
    anyway = serializers.BooleanField(
        default=False,
        help_text="Retry a task that failed for a reason the same request cannot mend "
        "(refused by HiDream, moderated, no result): it most likely fails again, at a cost.",
    )


class GeneratedImageSerializer(serializers.ModelSerializer):
    """A generated picture, with the absolute URL of the shop's own copy."""

    file_url = serializers.SerializerMethodField()
    reviewed_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    review_state = serializers.ChoiceField(choices=ReviewState.choices, read_only=True)

    class Meta:
        model = GeneratedImage
        fields = [
            "id",
            "task",
            "sub_task_id",
            "position",
            "status",
            "remote_status",
            "progress",
            "file_url",
            "remote_url",
            "width",
            "height",
            "bytes",
            "failure_reason",
            "review_state",
            "reviewed_by",
            "reviewed_at",
            "published_as",
            "published_at",
            "stored_at",
        ]
        read_only_fields = fields

    @extend_schema_field(NULLABLE_URI)
    def get_file_url(self, image) -> str | None:
        if not image.file:
            return None
        url = image.file.url
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class TaskSerializer(serializers.ModelSerializer):
    """A task with its pictures. The callback token is deliberately absent."""

    product = serializers.SerializerMethodField()
    template = serializers.SerializerMethodField()
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    images = GeneratedImageSerializer(many=True, read_only=True)

    class Meta:
        model = ModelImageTask
        fields = [
            "id",
            "product",
            "product_label",
            "status",
            "mode",
            "template",
            "prompt",
            "image_count",
            "remote_task_id",
            "error_code",
            "error_message",
            "attempts",
            "batch",
            "preset",
            "estimated_credits",
            "retry_of",
            "created_by",
            "created_at",
            "submitted_at",
            "finished_at",
            "images",
        ]
        read_only_fields = fields

    estimated_credits = serializers.SerializerMethodField()

    def get_estimated_credits(self, task) -> float | None:
        from ..services import estimated_credits

        return estimated_credits(task.image_count)

    def get_product(self, task) -> str | None:
        return product_reference(task.content_type_id, task.object_id)

    @extend_schema_field(
        {
            "type": "object",
            "nullable": True,
            "properties": {
                "human_template_id": {"type": "string"},
                "scene_template_id": {"type": "string"},
                "custom_human_template": {"type": "boolean"},
            },
        }
    )
    def get_template(self, task):
        if task.mode != "template":
            return None
        return task.sent_options()["template"]


class BulkResultSerializer(serializers.Serializer):
    batch = serializers.UUIDField(allow_null=True)
    ids = serializers.ListField(child=serializers.UUIDField())
    pictures = serializers.IntegerField(help_text="Pictures this run creates (or would).")
    credits = serializers.FloatField(
        allow_null=True, help_text="Estimated credits (HIDREAM_CREDITS_PER_IMAGE), or null."
    )
    dry_run = serializers.BooleanField()


class TemplateSerializer(serializers.ModelSerializer):
    """A template of the local catalogue, its preview served from the shop's storage."""

    name = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()

    class Meta:
        model = HiDreamTemplate
        fields = [
            "id",
            "remote_id",
            "kind",
            "name",
            "name_en",
            "name_zh",
            "gender",
            "scenes_type",
            "region",
            "preview_url",
            "is_active",
            "synced_at",
        ]
        read_only_fields = fields

    def get_name(self, template) -> str:
        return template.display_name()

    @extend_schema_field(NULLABLE_URI)
    def get_preview_url(self, template) -> str | None:
        if not template.preview:
            return None
        request = self.context.get("request")
        url = template.preview.url
        return request.build_absolute_uri(url) if request else url


@extend_schema_field({"type": "string", "enum": list(PublishTarget.values), "nullable": True})
class PublishTargetField(serializers.ChoiceField):
    """``gallery``, ``main`` or null; described inline so it shares no enum component with
    ``published_as`` (drf-spectacular would warn about two names for one choice set)."""

    def __init__(self, **kwargs):
        super().__init__(choices=PublishTarget.choices, **kwargs)


class ApproveSerializer(serializers.Serializer):
    """Body of ``approve``: optionally publish the picture at the same time."""

    publish = PublishTargetField(
        required=False,
        allow_null=True,
        default=None,
        help_text="gallery: add to the product gallery; main: make it the main image; "
        "null: approve only.",
    )


class PresetSerializer(serializers.ModelSerializer):
    """A named generation preset."""

    human_template_id = serializers.CharField(
        source="human_template.remote_id", default=None, read_only=True
    )
    scene_template_id = serializers.CharField(
        source="scene_template.remote_id", default=None, read_only=True
    )

    class Meta:
        model = HiDreamPreset
        fields = [
            "id",
            "name",
            "description",
            "mode",
            "human_template_id",
            "scene_template_id",
            "prompt",
            "image_count",
            "is_active",
        ]
        read_only_fields = fields
