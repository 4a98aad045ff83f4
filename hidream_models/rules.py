"""HiDream's rules for a model-image request, written once as a DRF serializer.

The client checks every request with ``ModelImageRequestSerializer`` before sending it, and the
admin form and the REST API reuse the same serializer, so a rule lives in one place only.
The rules are those of API-REFERENCE §2: ``template`` XOR ``prompt``, both template ids,
prompt ≤ 500 characters, ``image_count`` 1–4, image and mask as an http(s) URL or as base64
without the ``data:image/*;base64,`` prefix (stripped here if given).
"""

from __future__ import annotations

import base64
import binascii
import re

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from .url_policy import URLRefused, read_url

PROMPT_MAX_LENGTH = 500
IMAGE_COUNT_MIN = 1
IMAGE_COUNT_MAX = 4

_DATA_PREFIX = re.compile(r"^data:image/[\w.+-]*;base64,", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_NOT_BASE64_DATA = re.compile(r"[^A-Za-z0-9+/]")
#: base64 longer than this is checked without decoding it whole (a product photo: megabytes)
_BASE64_DECODE_LIMIT = 64 * 1024


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a host, read as the HTTP client reads it (url_policy)."""
    try:
        read_url(value)
    except URLRefused:
        return False
    return True


def looks_like_url(value: str) -> bool:
    """Whether an image value is meant as a URL (it starts with a scheme), not base64."""
    return bool(_SCHEME.match(value.strip()))


def normalise_image_value(value: str, field_label: str) -> str:
    """An http(s) URL as given, or base64 with any ``data:`` prefix removed and checked."""
    value = value.strip()
    if not value:
        raise serializers.ValidationError(_("This field may not be blank."))
    if _SCHEME.match(value):
        try:
            return read_url(value).url
        except URLRefused as exc:
            raise serializers.ValidationError(
                _("%(field)s: %(problem)s") % {"field": field_label, "problem": exc}
            ) from None
    value = _DATA_PREFIX.sub("", value, count=1)
    if not value:
        raise serializers.ValidationError(
            _("%(field)s has a data: prefix but no image data after it.") % {"field": field_label}
        )
    if value.startswith("data:"):
        raise serializers.ValidationError(
            _("%(field)s must be an image data URL (data:image/...;base64,...) or plain base64.")
            % {"field": field_label}
        )
    try:
        _check_base64(value)
    except (binascii.Error, ValueError):
        raise serializers.ValidationError(
            _("%(field)s is neither an http(s) URL nor valid base64 data.") % {"field": field_label}
        ) from None
    return value


def _check_base64(value: str) -> None:
    """``base64.b64decode(value, validate=True)``'s verdict, without its two full copies.

    Decoding a photo's base64 would make an ASCII copy of it and the decoded bytes, for a
    check only: a long value is instead searched for anything but data characters up to its
    last few, and only that tail, where padding may be, is decoded. Data characters in
    groups of four decode on their own, so the verdict on the whole is the tail's.
    """
    if len(value) <= _BASE64_DECODE_LIMIT:
        base64.b64decode(value, validate=True)
        return
    tail = len(value) - 1024
    tail -= tail % 4
    if _NOT_BASE64_DATA.search(value, 0, tail):
        raise binascii.Error("Non-base64 digit found")
    base64.b64decode(value[tail:], validate=True)


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that refuses booleans (DRF's accepts ``true`` as 1)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class TemplateChoiceSerializer(serializers.Serializer):
    """The ``template`` object: a human (model) template and a scene template."""

    human_template_id = serializers.CharField(max_length=128)
    scene_template_id = serializers.CharField(max_length=128)
    custom_human_template = serializers.BooleanField(default=False)


class ModelImageOptionsSerializer(serializers.Serializer):
    """The generation options: ``template`` XOR ``prompt``, and ``image_count``.

    Shared by the request below, the admin's generate form and the REST API.
    """

    template = TemplateChoiceSerializer(required=False)
    prompt = serializers.CharField(required=False, max_length=PROMPT_MAX_LENGTH)
    image_count = StrictIntegerField(
        default=1, min_value=IMAGE_COUNT_MIN, max_value=IMAGE_COUNT_MAX
    )

    def validate(self, attrs):
        has_template = attrs.get("template") is not None
        has_prompt = bool(attrs.get("prompt", "").strip())
        if has_template == has_prompt:
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        _(
                            "Give either a template (human and scene template ids) or a "
                            "prompt, not both and not neither."
                        )
                    ]
                }
            )
        return attrs


class ModelImageRequestSerializer(ModelImageOptionsSerializer):
    """The body of ``POST /model/async``, validated exactly as HiDream documents it."""

    image = serializers.CharField(trim_whitespace=True)
    mask = serializers.CharField(required=False, allow_blank=False)
    notify_url = serializers.CharField(required=False, allow_blank=False, max_length=2000)

    def validate_image(self, value: str) -> str:
        return normalise_image_value(value, "image")

    def validate_mask(self, value: str) -> str:
        return normalise_image_value(value, "mask")

    def validate_notify_url(self, value: str) -> str:
        if not is_http_url(value):
            raise serializers.ValidationError(_("notify_url must be an absolute http(s) URL."))
        return value


def validate_model_image_request(data: dict) -> dict:
    """Return the cleaned request body or raise ``HiDreamValidationError``."""
    from .exceptions import HiDreamValidationError

    serializer = ModelImageRequestSerializer(data=data)
    if not serializer.is_valid():
        raise HiDreamValidationError(flatten_errors(serializer.errors))
    cleaned = dict(serializer.validated_data)
    if "template" in cleaned:
        cleaned["template"] = dict(cleaned["template"])
    return cleaned


def flatten_errors(errors, prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    for field, value in errors.items():
        name = f"{prefix}{field}"
        if isinstance(value, dict):
            flat.update(flatten_errors(value, prefix=f"{name}."))
        else:
            flat[name] = [str(message) for message in value]
    return flat
