"""HiDream's request rules (API-REFERENCE §2): ``validate_model_image_request`` and the options
serializer shared by the admin form and the REST API."""

from __future__ import annotations

import base64

import pytest

from hidream_models.exceptions import HiDreamValidationError
from hidream_models.rules import (
    IMAGE_COUNT_MAX,
    IMAGE_COUNT_MIN,
    PROMPT_MAX_LENGTH,
    ModelImageOptionsSerializer,
    validate_model_image_request,
)
from tests.conftest import make_image_bytes

IMAGE_URL = "https://shop.example.com/media/products/dress.jpg"
TEMPLATE = {"human_template_id": "human-7", "scene_template_id": "scene-3"}
MISSING = object()


def body(**overrides):
    """A valid prompt request, with fields replaced (or removed with ``MISSING``)."""
    data = {"image": IMAGE_URL, "prompt": "A model walking in a summer park"}
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not MISSING}


def refused(data) -> dict[str, list[str]]:
    with pytest.raises(HiDreamValidationError) as info:
        validate_model_image_request(data)
    errors = info.value.errors
    assert errors, "a refusal must say which field is wrong"
    for field, messages in errors.items():
        assert isinstance(field, str)
        assert messages and all(isinstance(m, str) and m.strip() for m in messages)
    return errors


# -- template XOR prompt ------------------------------------------------------------------


def test_template_alone_is_accepted_with_defaults():
    cleaned = validate_model_image_request(body(prompt=MISSING, template=dict(TEMPLATE)))
    assert cleaned["template"] == {**TEMPLATE, "custom_human_template": False}
    assert type(cleaned["template"]) is dict
    assert "prompt" not in cleaned
    assert cleaned["image"] == IMAGE_URL
    assert cleaned["image_count"] == 1


def test_prompt_alone_is_accepted():
    cleaned = validate_model_image_request(body(prompt="  red dress on a beach  "))
    assert cleaned["prompt"] == "red dress on a beach"
    assert "template" not in cleaned


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(body(template=dict(TEMPLATE)), id="both"),
        pytest.param(body(prompt=MISSING), id="neither"),
    ],
)
def test_template_xor_prompt(data):
    errors = refused(data)
    assert list(errors) == ["non_field_errors"]
    text = " ".join(errors["non_field_errors"]).lower()
    assert "template" in text and "prompt" in text
    assert "not both" in text and "not neither" in text


def test_whitespace_prompt_does_not_count_as_a_prompt():
    errors = refused(body(prompt="   "))
    assert "prompt" in errors


@pytest.mark.parametrize("missing", ["human_template_id", "scene_template_id"])
def test_both_template_ids_are_required(missing):
    template = {k: v for k, v in TEMPLATE.items() if k != missing}
    errors = refused(body(prompt=MISSING, template=template))
    assert list(errors) == [f"template.{missing}"]
    assert "required" in " ".join(errors[f"template.{missing}"]).lower()


def test_empty_template_reports_each_missing_id():
    errors = refused(body(prompt=MISSING, template={}))
    assert set(errors) == {"template.human_template_id", "template.scene_template_id"}


def test_str_of_validation_error_names_the_field():
    with pytest.raises(HiDreamValidationError) as info:
        validate_model_image_request(body(prompt=MISSING, template={"human_template_id": "h"}))
    assert "template.scene_template_id" in str(info.value)


# -- prompt length -------------------------------------------------------------------------


def test_prompt_of_500_characters_is_accepted():
    prompt = "x" * PROMPT_MAX_LENGTH
    assert PROMPT_MAX_LENGTH == 500  # HiDream's documented limit
    assert validate_model_image_request(body(prompt=prompt))["prompt"] == prompt


def test_prompt_of_501_characters_is_refused():
    errors = refused(body(prompt="x" * (PROMPT_MAX_LENGTH + 1)))
    assert list(errors) == ["prompt"]
    assert str(PROMPT_MAX_LENGTH) in " ".join(errors["prompt"])


# -- image_count ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [IMAGE_COUNT_MIN, 2, IMAGE_COUNT_MAX])
def test_image_count_in_range_is_accepted(count):
    assert (IMAGE_COUNT_MIN, IMAGE_COUNT_MAX) == (1, 4)
    assert validate_model_image_request(body(image_count=count))["image_count"] == count


@pytest.mark.parametrize("count", [0, 5, -1, True, False, 2.5, "two", None])
def test_image_count_out_of_range_or_not_a_number_is_refused(count):
    errors = refused(body(image_count=count))
    assert list(errors) == ["image_count"]


# -- image and mask ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "sent"),
    [
        ("https://cdn.example.com/a.jpg", "https://cdn.example.com/a.jpg"),
        ("http://cdn.example.com/a.png?x=1", "http://cdn.example.com/a.png?x=1"),
        # As the HTTP client reads it (url_policy): what is sent is what was checked.
        ("HTTPS://X.IO/b", "https://x.io/b"),
    ],
)
def test_image_as_http_url_is_sent_as_the_http_client_reads_it(url, sent):
    assert validate_model_image_request(body(image=url))["image"] == sent


@pytest.mark.parametrize(
    "value",
    [
        "ftp://cdn.example.com/a.jpg",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "javascript://example.com/%0Aalert(1)",
        "http:///no-host.jpg",
        "data:text/html;base64,PGgxPmhpPC9oMT4=",
        "",
        "   ",
    ],
)
def test_image_with_bad_scheme_or_blank_is_refused(value):
    errors = refused(body(image=value))
    assert list(errors) == ["image"]


def test_image_missing_is_refused():
    assert list(refused(body(image=MISSING))) == ["image"]


@pytest.mark.parametrize("prefix", ["data:image/png;base64,", "DATA:IMAGE/JPEG;BASE64,"])
def test_data_url_prefix_is_stripped(prefix):
    raw = make_image_bytes(size=(20, 30), fmt="PNG")
    encoded = base64.b64encode(raw).decode("ascii")
    cleaned = validate_model_image_request(body(image=prefix + encoded))
    assert cleaned["image"] == encoded
    assert base64.b64decode(cleaned["image"]) == raw


def test_plain_base64_is_kept():
    encoded = base64.b64encode(make_image_bytes(size=(10, 10))).decode("ascii")
    assert validate_model_image_request(body(image=encoded))["image"] == encoded


@pytest.mark.parametrize(
    "value", ["not base64 at all!", "abc", "data:image/png;base64,@@@@", "aGVsbG8=x"]
)
def test_invalid_base64_is_refused(value):
    errors = refused(body(image=value))
    assert list(errors) == ["image"]
    assert "base64" in " ".join(errors["image"])


def test_data_url_prefix_with_nothing_after_it_is_refused():
    # After the prefix is removed nothing is left: HiDream would get an empty image.
    errors = refused(body(image="data:image/png;base64,"))
    assert list(errors) == ["image"]


def test_mask_follows_the_image_rules():
    encoded = base64.b64encode(make_image_bytes(size=(8, 8), fmt="PNG")).decode("ascii")
    cleaned = validate_model_image_request(body(mask="data:image/png;base64," + encoded))
    assert cleaned["mask"] == encoded
    errors = refused(body(mask="ftp://example.com/mask.png"))
    assert list(errors) == ["mask"]
    assert "mask" in " ".join(errors["mask"])


# -- notify_url ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://shop.example.com/hidream/callback/1/abc/", "http://shop.example.com/cb"]
)
def test_notify_url_http_or_https_is_accepted(url):
    assert validate_model_image_request(body(notify_url=url))["notify_url"] == url


@pytest.mark.parametrize(
    "url", ["ftp://shop.example.com/cb", "/hidream/callback/", "javascript:alert(1)", "https://"]
)
def test_notify_url_must_be_absolute_http(url):
    errors = refused(body(notify_url=url))
    assert list(errors) == ["notify_url"]
    assert "notify_url" in " ".join(errors["notify_url"])


# -- ModelImageOptionsSerializer (shared with the admin form and REST API) -----------------


def options_errors(data):
    serializer = ModelImageOptionsSerializer(data=data)
    assert not serializer.is_valid()
    return serializer.errors


def test_options_accept_a_template_or_a_prompt():
    with_template = ModelImageOptionsSerializer(data={"template": TEMPLATE, "image_count": 3})
    assert with_template.is_valid(), with_template.errors
    assert with_template.validated_data["image_count"] == 3
    assert dict(with_template.validated_data["template"])["scene_template_id"] == "scene-3"

    with_prompt = ModelImageOptionsSerializer(data={"prompt": "on a city street"})
    assert with_prompt.is_valid(), with_prompt.errors
    assert with_prompt.validated_data["image_count"] == 1


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"template": TEMPLATE, "prompt": "p"}, id="both"),
        pytest.param({"image_count": 2}, id="neither"),
    ],
)
def test_options_template_xor_prompt(data):
    errors = options_errors(data)
    assert set(errors) == {"non_field_errors"}
    assert "not both" in str(errors["non_field_errors"][0])


def test_options_refuse_bool_and_out_of_range_image_count():
    assert set(options_errors({"prompt": "p", "image_count": True})) == {"image_count"}
    assert set(options_errors({"prompt": "p", "image_count": 0})) == {"image_count"}
    assert set(options_errors({"prompt": "p", "image_count": 5})) == {"image_count"}


def test_options_refuse_long_prompt_and_nested_missing_id():
    assert set(options_errors({"prompt": "y" * (PROMPT_MAX_LENGTH + 1)})) == {"prompt"}
    errors = options_errors({"template": {"scene_template_id": "s"}})
    assert set(errors) == {"template"}
    assert set(errors["template"]) == {"human_template_id"}


def test_options_do_not_require_an_image():
    serializer = ModelImageOptionsSerializer(data={"prompt": "p"})
    assert serializer.is_valid(), serializer.errors
    assert "image" not in serializer.validated_data
