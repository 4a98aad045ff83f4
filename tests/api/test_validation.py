"""Validation errors of ``POST tasks/``: JSON, per field, saying what to fix; nothing created."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from hidream_models.models import ModelImageTask
from tests.api.helpers import PROMPT, TASKS, TEMPLATE, b64, body, png_bytes, product_ref

pytestmark = pytest.mark.django_db

PNG = png_bytes()


def post_invalid(api, data, *, format="json"):
    response = api.post(TASKS, data, format=format)
    assert response.status_code == 400, response.content
    assert ModelImageTask.objects.count() == 0
    errors = body(response)
    assert isinstance(errors, dict), errors
    return errors


def message(errors, field) -> str:
    assert field in errors, errors
    assert isinstance(errors[field], list) and errors[field], errors
    return " ".join(str(m) for m in errors[field])


@pytest.mark.parametrize(
    ("options", "field", "expected"),
    [
        pytest.param({**TEMPLATE, **PROMPT}, "non_field_errors", "not both", id="template+prompt"),
        pytest.param({}, "non_field_errors", "not neither", id="neither"),
        pytest.param({"prompt": "   "}, "prompt", "may not be blank", id="blank-prompt"),
        pytest.param({"prompt": "p" * 501}, "prompt", "no more than 500", id="prompt-501"),
        pytest.param({**PROMPT, "image_count": 0}, "image_count", "greater than or equal to 1"),
        pytest.param({**PROMPT, "image_count": 5}, "image_count", "less than or equal to 4"),
        pytest.param({**PROMPT, "image_count": "two"}, "image_count", "valid integer"),
        pytest.param({**PROMPT, "image_count": True}, "image_count", "valid integer", id="bool"),
        pytest.param(
            {"template": {"human_template_id": "h-001"}},
            "template",
            "scene_template_id",
            id="half-template",
        ),
    ],
)
def test_generation_options(api, product, options, field, expected):
    errors = post_invalid(api, {"product": product_ref(product), **options})
    if field == "template":
        assert "scene_template_id" in errors["template"], errors
        assert "required" in " ".join(errors["template"]["scene_template_id"])
    else:
        assert expected in message(errors, field)


def test_prompt_of_500_characters_is_fine(api, product):
    response = api.post(TASKS, {"product": product_ref(product), "prompt": "p" * 500})
    assert response.status_code == 201, response.content


def test_product_and_image_together(api, product):
    errors = post_invalid(api, {"product": product_ref(product), "image": b64(PNG), **PROMPT})
    text = message(errors, "non_field_errors")
    assert "product or an image" in text and "not both" in text


def test_neither_product_nor_image(api):
    errors = post_invalid(api, PROMPT)
    assert "Give either a product or an image" in message(errors, "non_field_errors")


def test_upload_that_is_not_an_image(api):
    upload = SimpleUploadedFile("notes.png", b"these are not pixels", content_type="image/png")
    errors = post_invalid(api, {"image": upload, **PROMPT}, format="multipart")
    assert "not an image" in message(errors, "image")
    assert (
        not default_storage.exists("hidream/sources")
        or not default_storage.listdir("hidream/sources")[1]
    ), "a refused upload was stored"


def test_truncated_image_upload(api):
    upload = SimpleUploadedFile("cut.png", PNG[: len(PNG) // 2], content_type="image/png")
    errors = post_invalid(api, {"image": upload, **PROMPT}, format="multipart")
    assert "image" in errors


def test_ftp_url(api):
    errors = post_invalid(api, {"image": "ftp://files.example.com/shirt.png", **PROMPT})
    assert "http:// or https://" in message(errors, "image")


def test_url_without_host(api):
    errors = post_invalid(api, {"image": "https:///shirt.png", **PROMPT})
    assert "name a host" in message(errors, "image")


@pytest.mark.parametrize(
    "value",
    ["!!! not base64 !!!", "data:image/png;base64,@@@@", "iVBORw0KGgo"],
    ids=["garbage", "garbage-after-prefix", "bad-padding"],
)
def test_invalid_base64(api, value):
    errors = post_invalid(api, {"image": value, **PROMPT})
    assert "base64" in message(errors, "image")


def test_base64_that_is_not_an_image(api):
    errors = post_invalid(api, {"image": b64(b"just some text, no picture"), **PROMPT})
    assert "not an image" in message(errors, "image")


def test_data_prefix_without_data(api):
    errors = post_invalid(api, {"image": "data:image/png;base64,", **PROMPT})
    assert "no image data" in message(errors, "image")


@pytest.mark.parametrize(
    "reference",
    ["catalog.product", "product:3", "catalog.product:", "catalog.product.extra:3", ":3"],
)
def test_bad_product_reference_format(api, reference):
    errors = post_invalid(api, {"product": reference, **PROMPT})
    text = message(errors, "product")
    assert "app_label.model:pk" in text and "catalog.product:3" in text


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("auth.user:1", "not a product model the API accepts; accepted: catalog.product"),
        ("catalog.product:999999", "No catalog.product with primary key"),
        ("catalog.product:abc", "No catalog.product with primary key"),
    ],
)
def test_product_the_api_cannot_use(api, superuser, reference, expected):
    errors = post_invalid(api, {"product": reference, **PROMPT})
    assert expected in message(errors, "product")


def test_product_without_image(api, make_product):
    bare = make_product(with_image=False)
    errors = post_invalid(api, {"product": product_ref(bare), **PROMPT})
    assert "no image" in message(errors, "product")


def test_mask_given_as_url_is_refused(api, product):
    errors = post_invalid(
        api,
        {"product": product_ref(product), "mask": "https://images.example.com/mask.png", **PROMPT},
    )
    assert "not as a URL" in message(errors, "mask")


def test_mask_that_is_not_an_image(api, product):
    errors = post_invalid(
        api, {"product": product_ref(product), "mask": b64(b"not a mask"), **PROMPT}
    )
    assert "not an image" in message(errors, "mask")


def test_image_of_wrong_type(api):
    errors = post_invalid(api, {"image": 12345, **PROMPT})
    assert "file upload, an http(s) URL or a base64" in message(errors, "image")


def test_errors_are_json_even_for_a_form_post(api):
    response = api.post(TASKS, {"image_count": "9", "prompt": "x"}, format="multipart")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "image_count" in body(response)


def test_malformed_json_is_a_json_400(api):
    response = api.generic("POST", TASKS, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in body(response)["detail"]


HUGE_PK = "9" * 30  # more than any database integer holds


def test_product_with_a_primary_key_too_large_for_the_database(api):
    api.raise_request_exception = False  # a 500 is the failure here, not an exception
    response = api.post(TASKS, {"product": f"catalog.product:{HUGE_PK}", **PROMPT})
    assert response.status_code == 400, response.content[:300]
    assert "No catalog.product with primary key" in message(body(response), "product")
    assert ModelImageTask.objects.count() == 0


def test_bulk_with_a_primary_key_too_large_for_the_database(api, product):
    api.raise_request_exception = False
    references = [product_ref(product), f"catalog.product:{HUGE_PK}"]
    response = api.post("/api/hidream/tasks/bulk/", {"products": references, **PROMPT})
    assert response.status_code == 400, response.content[:300]
    errors = body(response)["products"]
    assert set(errors) == {"1"} and "No catalog.product" in errors["1"][0]
    assert ModelImageTask.objects.count() == 0


def test_image_url_longer_than_the_task_can_store_is_refused(api):
    """``ModelImageTask.source_url`` holds 2000 characters; a longer URL must be a 400, not a
    database error (PostgreSQL) or a silently oversized value (SQLite)."""
    limit = ModelImageTask._meta.get_field("source_url").max_length
    url = "https://images.example.com/" + "a" * limit
    api.raise_request_exception = False
    response = api.post(TASKS, {"image": url, **PROMPT})
    assert response.status_code == 400, response.content[:300]
    assert "image" in body(response)
    assert ModelImageTask.objects.count() == 0
