"""``HIDREAM_API_CREATE_RATE`` throttles the endpoints that create work at HiDream, per user."""

from __future__ import annotations

import pytest

from hidream_models.models import ModelImageTask, TaskStatus
from tests.api.helpers import (
    BULK,
    IMAGES,
    PROMPT,
    TASKS,
    TEMPLATES,
    body,
    make_user,
    product_ref,
    task_url,
    token_client,
)

pytestmark = pytest.mark.django_db


def create(client, product):
    return client.post(TASKS, {"product": product_ref(product), **PROMPT})


def test_third_create_in_a_minute_is_429(api, product, settings):
    settings.HIDREAM_API_CREATE_RATE = "2/min"
    assert create(api, product).status_code == 201
    assert create(api, product).status_code == 201
    third = create(api, product)
    assert third.status_code == 429
    assert "throttled" in body(third)["detail"].lower()
    assert 0 < int(third["Retry-After"]) <= 60
    assert ModelImageTask.objects.count() == 2


def test_bulk_and_retry_count_against_the_same_rate(api, product, task_factory, settings):
    failed = task_factory(product, TaskStatus.FAILED)
    settings.HIDREAM_API_CREATE_RATE = "2/min"
    assert api.post(BULK, {"products": [product_ref(product)], **PROMPT}).status_code == 201
    assert api.post(f"{task_url(failed)}retry/").status_code == 201
    assert api.post(BULK, {"products": [product_ref(product)], **PROMPT}).status_code == 429
    assert api.post(f"{task_url(failed)}retry/").status_code == 429
    assert create(api, product).status_code == 429
    assert ModelImageTask.objects.count() == 3


def test_the_rate_is_per_user(api, product, settings):
    settings.HIDREAM_API_CREATE_RATE = "1/min"
    other = token_client(make_user("other", ("hidream_models.generate", "catalog.view_product")))
    assert create(api, product).status_code == 201
    assert create(api, product).status_code == 429
    assert create(other, product).status_code == 201
    assert create(other, product).status_code == 429


@pytest.mark.parametrize("rate", ["", None], ids=["empty", "none"])
def test_no_rate_means_no_throttle(api, product, settings, rate):
    settings.HIDREAM_API_CREATE_RATE = rate
    for _ in range(8):
        assert create(api, product).status_code == 201
    assert ModelImageTask.objects.count() == 8


def test_the_default_rate_is_60_per_minute(api, product, settings):
    if hasattr(settings, "HIDREAM_API_CREATE_RATE"):
        del settings.HIDREAM_API_CREATE_RATE  # the app's own default applies
    statuses = [create(api, product).status_code for _ in range(61)]
    assert statuses == [201] * 60 + [429]


def test_a_rate_change_applies_at_once(api, product, settings):
    settings.HIDREAM_API_CREATE_RATE = "1/min"
    assert create(api, product).status_code == 201
    assert create(api, product).status_code == 429
    settings.HIDREAM_API_CREATE_RATE = ""
    assert create(api, product).status_code == 201


def test_reads_and_reviews_are_not_throttled(api, product, task_factory, image_factory, settings):
    task = task_factory(product, TaskStatus.SUCCEEDED)
    image = image_factory(task, 0)
    settings.HIDREAM_API_CREATE_RATE = "1/min"
    for _ in range(5):
        assert api.get(TASKS).status_code == 200
        assert api.get(task_url(task)).status_code == 200
        assert api.get(IMAGES).status_code == 200
        assert api.get(TEMPLATES).status_code == 200
        assert api.post(f"{IMAGES}{image.pk}/approve/").status_code == 200
    assert create(api, product).status_code == 201
    assert create(api, product).status_code == 429


def test_the_throttle_counts_in_the_cache_the_setting_names(api, product, settings, tmp_path):
    """A cache shared by processes (files here; Redis or the database in production) holds
    the count, so a second web process sees the first one's requests."""
    from django.core.cache import caches

    settings.CACHES = {
        **settings.CACHES,
        "shared": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "throttle"),
        },
    }
    settings.HIDREAM_THROTTLE_CACHE = "shared"
    settings.HIDREAM_API_CREATE_RATE = "1/min"
    assert create(api, product).status_code == 201
    counted = [key for key in caches["shared"]._list_cache_files()]
    assert counted, "the request was not counted in the shared cache"
    caches["default"].clear()  # what another process's memory would hold: nothing
    assert create(api, product).status_code == 429
