"""The product model's own permissions count, and private answers are not cached (issue 13,
points 6 and 7)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils.cache import get_max_age

from hidream_models.models import ModelImageTask
from tests.api.helpers import make_generated_image, make_task, make_user, token_client
from tests.test_admin import (  # noqa: F401 (local_templates is a fixture)
    CONFIRM_URL,
    form_data,
    local_templates,
    make_staff,
)

APP_PERMS = ("hidream_models.generate", "hidream_models.view_modelimagetask")
TEMPLATE = {"human_template_id": "h-001", "scene_template_id": "s-001"}

# -- the admin's generate URL -------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_generate_url_refuses_staff_without_the_product_view_permission(
    client, make_product, local_templates  # noqa: F811
):
    """The app's permissions alone: the product changelist is closed to this user, so its
    generate URL is too, however the POST is made."""
    human, scene = local_templates
    product = make_product()
    client.force_login(make_staff("app-only", APP_PERMS))
    assert client.get(reverse("admin:catalog_product_changelist")).status_code == 403
    response = client.post(
        reverse(CONFIRM_URL), form_data([product.pk], human=human, scene=scene)
    )
    assert response.status_code == 403
    assert not ModelImageTask.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("product_perm", ["catalog.view_product", "catalog.change_product"])
def test_admin_generate_url_works_with_what_the_changelist_requires(
    client, make_product, local_templates, product_perm  # noqa: F811
):
    human, scene = local_templates
    product = make_product()
    client.force_login(make_staff("merchandiser", (*APP_PERMS, product_perm)))
    response = client.post(
        reverse(CONFIRM_URL), form_data([product.pk], human=human, scene=scene)
    )
    assert response.status_code == 302
    assert ModelImageTask.objects.count() == 1


@pytest.mark.django_db
def test_the_action_is_not_offered_without_the_product_view_permission(rf, make_product):
    from django.contrib import admin

    from shop_demo.catalog.models import Product

    request = rf.get("/admin/catalog/product/")
    request.user = make_staff("app-only-2", APP_PERMS)
    model_admin = admin.site._registry[Product]
    assert "generate_model_images" not in model_admin.get_actions(request)


# -- the API ------------------------------------------------------------------------------------


@pytest.fixture
def app_only_api(db):
    return token_client(make_user("api-app-only", APP_PERMS))


@pytest.fixture
def product_api(db):
    return token_client(make_user("api-with-products", (*APP_PERMS, "catalog.view_product")))


def test_api_create_refuses_a_product_its_user_may_not_view(app_only_api, make_product):
    product = make_product()
    response = app_only_api.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{product.pk}", "template": TEMPLATE},
    )
    assert response.status_code == 403, response.content
    assert "catalog.product" in response.json()["detail"]
    assert not ModelImageTask.objects.exists()


def test_api_bulk_refuses_products_its_user_may_not_view(app_only_api, make_product):
    products = [make_product(), make_product()]
    response = app_only_api.post(
        "/api/hidream/tasks/bulk/",
        {"products": [f"catalog.product:{p.pk}" for p in products], "template": TEMPLATE},
    )
    assert response.status_code == 403, response.content
    assert not ModelImageTask.objects.exists()


def test_api_refuses_before_saying_whether_a_product_exists(app_only_api):
    response = app_only_api.post(
        "/api/hidream/tasks/",
        {"product": "catalog.product:999999", "template": TEMPLATE},
    )
    assert response.status_code == 403


def test_api_creates_for_a_product_its_user_may_view(product_api, make_product):
    product = make_product()
    response = product_api.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{product.pk}", "template": TEMPLATE},
    )
    assert response.status_code == 201, response.content
    bulk = product_api.post(
        "/api/hidream/tasks/bulk/",
        {"products": [f"catalog.product:{make_product().pk}"], "template": TEMPLATE},
    )
    assert bulk.status_code == 201, bulk.content


# -- Cache-Control -------------------------------------------------------------------------------


def assert_private_no_store(response):
    directives = {part.strip() for part in response["Cache-Control"].split(",")}
    assert {"private", "no-store"} <= directives, response["Cache-Control"]
    assert get_max_age(response) in (None, 0)


def test_api_answers_with_task_or_picture_data_are_not_cached(product_api, make_product):
    product = make_product()
    created = product_api.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{product.pk}", "template": TEMPLATE},
    )
    assert created.status_code == 201
    assert_private_no_store(created)
    task = make_task(product)
    image = make_generated_image(task)
    for url in (
        "/api/hidream/tasks/",
        f"/api/hidream/tasks/{task.pk}/",
        "/api/hidream/images/",
        f"/api/hidream/images/{image.pk}/",
        "/api/hidream/templates/",
        "/api/hidream/presets/",
    ):
        response = product_api.get(url)
        assert response.status_code in (200, 403), (url, response.status_code)
        assert_private_no_store(response)


def test_api_errors_are_not_cached_either(app_only_api):
    response = app_only_api.get("/api/hidream/tasks/00000000-0000-0000-0000-000000000000/")
    assert response.status_code == 404
    assert_private_no_store(response)


# -- every path that generates for a product or changes it -------------------------------------


def failed_task_of(product):
    from hidream_models.models import TaskStatus

    return make_task(product, TaskStatus.FAILED)


def test_api_retry_needs_the_product_view_permission(app_only_api, product_api, make_product):
    task = failed_task_of(make_product())
    refused = app_only_api.post(f"/api/hidream/tasks/{task.pk}/retry/", {})
    assert refused.status_code == 403, refused.content
    assert ModelImageTask.objects.count() == 1
    assert product_api.post(f"/api/hidream/tasks/{task.pk}/retry/", {}).status_code == 201


@pytest.fixture
def published_setup(settings, make_product):
    settings.HIDREAM_PUBLISHER = "shop_demo.catalog.publishing.CatalogPublisher"
    from hidream_models.publishing import _load

    _load.cache_clear()
    product = make_product()
    image = make_generated_image(make_task(product))
    yield product, image
    _load.cache_clear()


REVIEW_ONLY = ("hidream_models.review", "hidream_models.view_generatedimage")


def test_api_publishing_needs_the_product_change_permission(published_setup):
    _product, image = published_setup
    reviewer = token_client(make_user("reviewer-only", REVIEW_ONLY))
    refused = reviewer.post(f"/api/hidream/images/{image.pk}/approve/", {"publish": "main"})
    assert refused.status_code == 403, refused.content
    assert "change" in refused.json()["detail"]
    image.refresh_from_db()
    assert image.review_state == "unreviewed" and not image.published_as  # all or nothing
    # Approving alone changes no product: the review permission is enough.
    assert reviewer.post(f"/api/hidream/images/{image.pk}/approve/", {}).status_code == 200

    editor = token_client(make_user("editor", (*REVIEW_ONLY, "catalog.change_product")))
    published = editor.post(f"/api/hidream/images/{image.pk}/approve/", {"publish": "main"})
    assert published.status_code == 200, published.content
    for action in ("unpublish", "reject"):
        response = reviewer.post(f"/api/hidream/images/{image.pk}/{action}/", {})
        assert response.status_code == 403, (action, response.content)
    image.refresh_from_db()
    assert image.published_as == "main"


@pytest.mark.django_db
def test_admin_review_buttons_cannot_publish_without_the_product_change_permission(
    client, published_setup
):
    from django.contrib.messages import get_messages

    _product, image = published_setup
    client.force_login(make_staff("admin-reviewer", REVIEW_ONLY))
    response = client.post(
        reverse("admin:hidream_models_review_decision", args=[image.pk]),
        {"decision": "approve_main"},
    )
    assert response.status_code == 302
    assert any("change permission" in str(m) for m in get_messages(response.wsgi_request))
    image.refresh_from_db()
    assert not image.published_as and image.review_state == "unreviewed"


@pytest.mark.parametrize("path", ["/api/hidream/tasks/", "/api/hidream/tasks/bulk/"])
@pytest.mark.parametrize("body", ["[" * 200_000, '{"a":' * 100_000, '{"prompt": NaN}'])
def test_hostile_json_to_the_api_is_a_400_not_a_500(product_api, path, body):
    product_api.raise_request_exception = False
    response = product_api.generic("POST", path, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "JSON parse error" in response.json()["detail"]


def _random_jpeg(min_bytes: int) -> bytes:
    """A real JPEG of at least ``min_bytes`` (noise compresses badly, as a big photo does)."""
    import io
    import random

    from PIL import Image

    rng = random.Random(7)
    side = 600
    while True:
        noise = bytes(rng.getrandbits(8) for _ in range(side * side * 3))
        out = io.BytesIO()
        Image.frombytes("RGB", (side, side), noise).save(out, "JPEG", quality=95)
        if out.tell() >= min_bytes:
            return out.getvalue()
        side += 300


def test_a_big_photo_as_base64_json_is_read_whatever_djangos_limit(product_api, settings):
    """2.3 MB of JPEG is 3.1 MB of base64, over Django's 2.5 MB DATA_UPLOAD_MAX_MEMORY_SIZE:
    the API reads JSON bodies itself, up to the app's own HIDREAM_MAX_UPLOAD_BYTES."""
    import base64

    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 2_621_440  # Django's default
    photo = _random_jpeg(2_300_000)
    body = {"image": base64.b64encode(photo).decode(), "prompt": "a model in a park"}
    response = product_api.post("/api/hidream/tasks/", body, format="json")
    assert response.status_code == 201, response.content[:300]
    settings.HIDREAM_MAX_UPLOAD_BYTES = 2_000_000
    refused = product_api.post("/api/hidream/tasks/", body, format="json")
    assert refused.status_code in (400, 413)
    assert "HIDREAM_MAX_UPLOAD_BYTES" in str(refused.content)
