"""API serializers. Request rules come from ``rules.ModelImageOptionsSerializer`` (shared with
the client and the admin form); these add what only the API has: product references, image
uploads/URLs/base64, and the output shapes. No output ever contains the callback token."""

from __future__ import annotations

import base64
import binascii
import io

from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..images import ImageProblem, open_checked
from ..models import GeneratedImage, HiDreamTemplate, ModelImageTask, ReviewState
from ..rules import ModelImageOptionsSerializer, is_http_url, normalise_image_value
from .references import parse_reference, product_reference

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@extend_schema_field(OpenApiTypes.STR)
class ImageInputField(serializers.Field):
    """An image given as a multipart file, an http(s) URL, or base64 (``data:`` prefix ok).

    Returns ``("url", str)`` or ``("file", UploadedFile | bytes)``; files are checked with
    Pillow (and the pixel cap) before anything is stored.
    """

    default_error_messages = {
        "invalid": _("Send a file upload, an http(s) URL or a base64 string."),
    }

    def to_internal_value(self, data):
        if hasattr(data, "read"):  # an upload
            if getattr(data, "size", 0) > MAX_UPLOAD_BYTES:
                raise serializers.ValidationError(
                    _("The file is larger than %(n)s MB.") % {"n": MAX_UPLOAD_BYTES // 2**20}
                )
            self._check_image(data)
            data.seek(0)
            return ("file", data)
        if not isinstance(data, str):
            self.fail("invalid")
        value = normalise_image_value(data, self.field_name)
        if is_http_url(value):
            return ("url", value)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            self.fail("invalid")
        if len(raw) > MAX_UPLOAD_BYTES:
            raise serializers.ValidationError(
                _("The image is larger than %(n)s MB.") % {"n": MAX_UPLOAD_BYTES // 2**20}
            )
        self._check_image(io.BytesIO(raw))
        return ("file", raw)

    def _check_image(self, fp):
        try:
            image = open_checked(fp, _("The %(field)s") % {"field": self.field_name})
            image.verify()
        except ImageProblem as exc:
            raise serializers.ValidationError(str(exc)) from None
        except Exception as exc:  # Pillow raises many types for damaged data
            raise serializers.ValidationError(
                _("The %(field)s is damaged: %(error)s") % {"field": self.field_name, "error": exc}
            ) from None

    def to_representation(self, value):
        return value


class ProductReferenceField(serializers.CharField):
    """``app_label.model:pk``, e.g. ``catalog.product:3``."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        parse_reference(value)
        return value


class TaskCreateSerializer(ModelImageOptionsSerializer):
    """Create one task: a ``product`` or an ``image``, plus the generation options."""

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


class BulkCreateSerializer(ModelImageOptionsSerializer):
    """Create tasks for many products with the same options, all or nothing."""

    products = serializers.ListField(
        child=ProductReferenceField(), min_length=1, max_length=1000, allow_empty=False
    )


class TaskRetrySerializer(serializers.Serializer):
    resend_unconfirmed = serializers.BooleanField(
        default=False,
        help_text="Required to resend a task HiDream may already be generating (and billing).",
    )


class GeneratedImageSerializer(serializers.ModelSerializer):
    """A generated picture, with the absolute URL of the shop's own copy."""

    file_url = serializers.SerializerMethodField()
    reviewed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
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
            "stored_at",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
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
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
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
            "retry_of",
            "created_by",
            "created_at",
            "submitted_at",
            "finished_at",
            "images",
        ]
        read_only_fields = fields

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
    batch = serializers.UUIDField()
    ids = serializers.ListField(child=serializers.UUIDField())
    pictures = serializers.IntegerField()


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

    @extend_schema_field(OpenApiTypes.URI)
    def get_preview_url(self, template) -> str | None:
        if not template.preview:
            return None
        request = self.context.get("request")
        url = template.preview.url
        return request.build_absolute_uri(url) if request else url


class ReviewSerializer(serializers.Serializer):
    """Body of approve/reject; ``publish`` arrives with the review issue."""

    note = serializers.CharField(required=False, allow_blank=True, max_length=500)
