"""``tasks/``: list (filters, pagination, ordering), create, retrieve, refresh, retry, bulk."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from hidream_models.models import (
    GenerationMode,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from shop_demo.catalog.models import Product
from tests import jobs
from tests.api.helpers import (
    BULK,
    PROMPT,
    TASKS,
    TEMPLATE,
    b64,
    body,
    make_user,
    png_bytes,
    product_ref,
    task_url,
)

pytestmark = pytest.mark.django_db


def job_names() -> list[str]:
    return [job.task.name for job in jobs.pending_jobs()]


def ids_of(response) -> list[str]:
    return [item["id"] for item in body(response)["results"]]


def set_created_at(task, when):
    ModelImageTask.objects.filter(pk=task.pk).update(created_at=when)
    task.refresh_from_db()
    return task


# -- list ------------------------------------------------------------------------------------


@pytest.fixture
def five_tasks(task_factory, make_product):
    """Five tasks, a day apart (oldest first), with different statuses and products."""
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    statuses = [
        TaskStatus.QUEUED,
        TaskStatus.SUBMITTED,
        TaskStatus.FAILED,
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
    ]
    tasks = []
    for n, status in enumerate(statuses):
        task = task_factory(make_product(), status)
        tasks.append(set_created_at(task, start + timedelta(days=n)))
    return tasks


def test_list_is_paginated_newest_first(api, five_tasks):
    response = api.get(TASKS, {"page_size": 2})
    assert response.status_code == 200
    data = body(response)
    assert data["count"] == 5
    assert ids_of(response) == [str(five_tasks[4].pk), str(five_tasks[3].pk)]
    assert data["previous"] is None
    assert data["next"].startswith("http://testserver/api/hidream/tasks/")
    assert "page=2" in data["next"] and "page_size=2" in data["next"]

    last = api.get(TASKS, {"page_size": 2, "page": 3})
    assert ids_of(last) == [str(five_tasks[0].pk)]
    assert body(last)["next"] is None


def test_default_page_is_50_and_page_size_is_capped_at_200(api):
    ModelImageTask.objects.bulk_create(
        ModelImageTask(mode=GenerationMode.PROMPT, prompt="p", source_url="https://x.example/a.jpg")
        for _ in range(205)
    )
    assert len(body(api.get(TASKS))["results"]) == 50
    capped = body(api.get(TASKS, {"page_size": 1000}))
    assert capped["count"] == 205
    assert len(capped["results"]) == 200


def test_list_filters_by_one_status(api, five_tasks):
    response = api.get(TASKS, {"status": "failed"})
    assert response.status_code == 200
    assert set(ids_of(response)) == {str(five_tasks[2].pk), str(five_tasks[4].pk)}


def test_list_filters_by_several_statuses(api, five_tasks):
    response = api.get(f"{TASKS}?status=queued&status=succeeded")
    assert response.status_code == 200
    assert set(ids_of(response)) == {str(five_tasks[0].pk), str(five_tasks[3].pk)}


def test_list_refuses_an_unknown_status(api, five_tasks):
    response = api.get(TASKS, {"status": "exploded"})
    assert response.status_code == 400
    assert "status" in body(response)


def test_list_filters_by_product_reference(api, five_tasks, task_factory):
    product = Product.objects.get(pk=five_tasks[1].object_id)
    again = task_factory(product)
    response = api.get(TASKS, {"product": product_ref(product)})
    assert response.status_code == 200
    assert set(ids_of(response)) == {str(five_tasks[1].pk), str(again.pk)}
    assert all(item["product"] == product_ref(product) for item in body(response)["results"])


def test_product_filter_of_an_unknown_model_is_a_field_error(api, five_tasks):
    response = api.get(TASKS, {"product": "nosuch.model:1"})
    assert response.status_code == 400
    assert "nosuch.model" in " ".join(body(response)["product"])


def test_product_filter_in_a_bad_format_is_a_field_error(api, five_tasks):
    """A malformed product filter must be reported against ``product`` like any other error
    (README: "Errors are JSON with a message per field"), not as a bare list."""
    response = api.get(TASKS, {"product": "catalog-product-3"})
    assert response.status_code == 400
    data = body(response)
    assert isinstance(data, dict), f"error body is not keyed by field: {data!r}"
    assert "app_label.model:pk" in " ".join(data["product"])


def test_list_filters_by_creator_username(api, product, task_factory):
    alice, bob = make_user("alice"), make_user("bob")
    mine = task_factory(product, user=alice)
    task_factory(product, user=bob)
    task_factory(product)
    response = api.get(TASKS, {"created_by": "alice"})
    assert ids_of(response) == [str(mine.pk)]
    assert body(response)["results"][0]["created_by"] == "alice"


def test_list_filters_by_creation_time_window(api, five_tasks):
    # created_after is inclusive, created_before exclusive
    response = api.get(
        TASKS,
        {"created_after": "2026-03-02T12:00:00Z", "created_before": "2026-03-04T12:00:00Z"},
    )
    assert response.status_code == 200
    assert ids_of(response) == [str(five_tasks[2].pk), str(five_tasks[1].pk)]
    after = api.get(TASKS, {"created_after": "2026-03-04T00:00:00Z"})
    assert set(ids_of(after)) == {str(five_tasks[3].pk), str(five_tasks[4].pk)}


def test_list_refuses_a_malformed_date(api, five_tasks):
    response = api.get(TASKS, {"created_after": "yesterday"})
    assert response.status_code == 400
    assert "created_after" in body(response)


def test_list_filters_by_batch(api, make_product, task_factory):
    response = api.post(
        BULK, {"products": [product_ref(make_product()), product_ref(make_product())], **PROMPT}
    )
    assert response.status_code == 201, response.content
    batch = body(response)["batch"]
    task_factory(make_product())  # not in the batch
    listed = api.get(TASKS, {"batch": batch})
    assert sorted(ids_of(listed)) == sorted(body(response)["ids"])
    assert {item["batch"] for item in body(listed)["results"]} == {batch}
    assert body(api.get(TASKS, {"batch": str(uuid.uuid4())}))["count"] == 0


@pytest.mark.parametrize(
    ("ordering", "expected"),
    [
        pytest.param("created_at", [0, 1, 2, 3, 4], id="oldest-first"),
        pytest.param("-created_at", [4, 3, 2, 1, 0], id="newest-first"),
    ],
)
def test_list_ordering_by_creation(api, five_tasks, ordering, expected):
    response = api.get(TASKS, {"ordering": ordering})
    assert ids_of(response) == [str(five_tasks[n].pk) for n in expected]


def test_list_ordering_by_status(api, five_tasks):
    statuses = [item["status"] for item in body(api.get(TASKS, {"ordering": "status"}))["results"]]
    assert statuses == sorted(statuses)
    statuses = [item["status"] for item in body(api.get(TASKS, {"ordering": "-status"}))["results"]]
    assert statuses == sorted(statuses, reverse=True)


# -- create ----------------------------------------------------------------------------------


def assert_created(response):
    """201 with the task and a Location that serves the same task."""
    assert response.status_code == 201, response.content
    data = body(response)
    task = ModelImageTask.objects.get(pk=data["id"])
    assert response["Location"] == f"http://testserver{task_url(task)}"
    return task, data


def test_create_for_a_product_with_a_template(
    api, superuser, product, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(TASKS, {"product": product_ref(product), **TEMPLATE, "image_count": 2})
    task, data = assert_created(response)
    assert data["product"] == product_ref(product)
    assert data["product_label"] == product.name
    assert data["status"] == "queued"
    assert data["mode"] == "template"
    assert data["template"] == {
        "human_template_id": "h-001",
        "scene_template_id": "s-001",
        "custom_human_template": False,
    }
    assert data["image_count"] == 2
    assert data["created_by"] == "boss"
    assert data["images"] == []
    assert task.content_type == ContentType.objects.get_for_model(Product)
    assert task.object_id == str(product.pk)
    assert task.source_image.name == product.image.name
    assert task.created_by == superuser
    assert job_names() == ["dispatch_submissions"]
    assert list(jobs.pending_jobs()[0].args) == [[str(task.pk)]]

    again = api.get(response["Location"])
    assert again.status_code == 200
    assert body(again)["id"] == data["id"]


def test_create_for_a_product_with_a_prompt(api, product):
    response = api.post(TASKS, {"product": product_ref(product), **PROMPT, "image_count": 4})
    task, data = assert_created(response)
    assert (data["mode"], data["prompt"], data["template"]) == ("prompt", PROMPT["prompt"], None)
    assert task.image_count == 4


def test_create_with_a_multipart_upload(api):
    upload = png_bytes(color=(200, 30, 30))
    response = api.post(
        TASKS,
        {
            "image": SimpleUploadedFile("shirt.png", upload, content_type="image/png"),
            "prompt": "studio portrait",
            "image_count": "3",
        },
        format="multipart",
    )
    task, data = assert_created(response)
    assert data["product"] is None
    assert data["image_count"] == 3
    assert task.source_url == ""
    assert task.source_image.name.startswith("hidream/sources/")
    with default_storage.open(task.source_image.name, "rb") as stored:
        assert stored.read() == upload


@pytest.mark.parametrize(
    "url",
    ["http://images.example.com/shirt.jpg", "https://cdn.example.org/p/shirt.png?v=2"],
    ids=["http", "https"],
)
def test_create_with_an_image_url(api, url):
    task, data = assert_created(api.post(TASKS, {"image": url, **TEMPLATE}))
    assert task.source_url == url
    assert not task.source_image
    assert data["product"] is None


@pytest.mark.parametrize("prefix", ["", "data:image/png;base64,"], ids=["plain", "data-url"])
def test_create_with_base64(api, prefix):
    raw = png_bytes(color=(10, 200, 10))
    task, _ = assert_created(api.post(TASKS, {"image": prefix + b64(raw), **PROMPT}))
    assert task.source_image.name.startswith("hidream/sources/")
    with default_storage.open(task.source_image.name, "rb") as stored:
        assert stored.read() == raw


def test_create_with_a_mask_upload(api, product):
    mask = png_bytes(color=(0, 0, 0))
    response = api.post(
        TASKS,
        {
            "product": product_ref(product),
            "prompt": "x",
            "mask": SimpleUploadedFile("mask.png", mask, content_type="image/png"),
        },
        format="multipart",
    )
    task, _ = assert_created(response)
    assert task.mask.name.startswith("hidream/masks/")
    with default_storage.open(task.mask.name, "rb") as stored:
        assert stored.read() == mask


# -- retrieve --------------------------------------------------------------------------------


def test_retrieve_shows_the_pictures(api, product, task_factory, image_factory):
    task = task_factory(product, TaskStatus.PARTIAL, remote_task_id="rt-1")
    pending = image_factory(task, 2, ImageStatus.PENDING)
    stored = image_factory(task, 0, ImageStatus.STORED)
    failed = image_factory(
        task, 1, ImageStatus.FAILED, failure_reason="HiDream refused it: sensitive content"
    )
    response = api.get(task_url(task))
    assert response.status_code == 200
    data = body(response)
    assert data["id"] == str(task.pk)
    assert data["status"] == "partial"
    assert data["remote_task_id"] == "rt-1"
    pictures = data["images"]
    assert [p["id"] for p in pictures] == [stored.pk, failed.pk, pending.pk]

    first = pictures[0]
    assert first["file_url"] == f"http://testserver{stored.file.url}"
    assert first["file_url"].startswith("http://testserver/media/hidream/")
    assert default_storage.exists(stored.file.name)
    assert first["remote_url"] == stored.remote_url
    assert (first["width"], first["height"]) == (300, 420)
    assert first["bytes"] == stored.file.size
    assert first["status"] == "stored"
    assert first["review_state"] == "unreviewed"
    assert first["failure_reason"] == ""
    assert first["task"] == str(task.pk)

    assert pictures[1]["status"] == "failed"
    assert pictures[1]["failure_reason"] == "HiDream refused it: sensitive content"
    assert pictures[1]["file_url"] is None
    assert pictures[2]["status"] == "pending"
    assert pictures[2]["file_url"] is None
    assert pictures[2]["width"] is None


def test_retrieve_unknown_task_is_404(api):
    assert api.get(task_url(uuid.uuid4())).status_code == 404


# -- refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [TaskStatus.SUBMITTED, TaskStatus.PROCESSING])
def test_refresh_of_a_task_at_hidream_queues_a_poll(
    api, product, task_factory, status, django_capture_on_commit_callbacks
):
    task = task_factory(product, status, remote_task_id="rt-refresh")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{task_url(task)}refresh/")
    assert response.status_code == 202, response.content
    assert "queued" in body(response)["detail"]
    assert job_names() == ["sync_model_image_task"]
    assert list(jobs.pending_jobs()[0].args) == [str(task.pk)]


def test_refresh_of_a_queued_task_is_409(
    api, product, task_factory, django_capture_on_commit_callbacks
):
    task = task_factory(product, TaskStatus.QUEUED)
    jobs.clear_jobs()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{task_url(task)}refresh/")
    assert response.status_code == 409
    assert "Queued" in body(response)["detail"]
    assert job_names() == []


def test_refresh_of_a_never_confirmed_task_is_409(api, product, task_factory):
    task = task_factory(product, TaskStatus.UNCONFIRMED)
    response = api.post(f"{task_url(task)}refresh/")
    assert response.status_code == 409
    assert "never confirmed" in body(response)["detail"]


# -- retry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [TaskStatus.FAILED, TaskStatus.PARTIAL])
def test_retry_makes_a_new_task(
    api, superuser, product, task_factory, status, django_capture_on_commit_callbacks
):
    old = task_factory(product, status, error_message="boom")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{task_url(old)}retry/", {}, format="json")
    new, data = assert_created(response)
    assert new.pk != old.pk
    assert data["retry_of"] == str(old.pk)
    assert data["status"] == "queued"
    assert data["product"] == product_ref(product)
    assert (new.mode, new.image_count, new.human_template_id) == ("template", 2, "h-001")
    assert new.source_image.name == old.source_image.name
    assert new.created_by == superuser
    assert ModelImageTask.objects.count() == 2
    old.refresh_from_db()
    assert old.status == status  # the old task is kept as it was
    assert job_names()[-1] == "dispatch_submissions"
    assert list(jobs.pending_jobs()[-1].args) == [[str(new.pk)]]


def test_retry_of_an_unconfirmed_task_needs_explicit_consent(api, product, task_factory):
    old = task_factory(product, TaskStatus.UNCONFIRMED)
    refused = api.post(f"{task_url(old)}retry/", {}, format="json")
    assert refused.status_code == 409
    assert "Confirm explicitly" in body(refused)["detail"]
    assert ModelImageTask.objects.count() == 1

    refused = api.post(f"{task_url(old)}retry/", {"resend_unconfirmed": False}, format="json")
    assert refused.status_code == 409

    new, data = assert_created(
        api.post(f"{task_url(old)}retry/", {"resend_unconfirmed": True}, format="json")
    )
    assert data["retry_of"] == str(old.pk)
    assert ModelImageTask.objects.count() == 2


@pytest.mark.parametrize("status", [TaskStatus.QUEUED, TaskStatus.SUBMITTED, TaskStatus.SUCCEEDED])
def test_retry_of_a_task_that_did_not_fail_is_409(api, product, task_factory, status):
    old = task_factory(product, status)
    response = api.post(f"{task_url(old)}retry/", {"resend_unconfirmed": True}, format="json")
    assert response.status_code == 409
    assert "failed" in body(response)["detail"]
    assert ModelImageTask.objects.count() == 1


def test_retry_of_an_unknown_task_is_404(api):
    assert api.post(f"{task_url(uuid.uuid4())}retry/", {}, format="json").status_code == 404


# -- bulk ------------------------------------------------------------------------------------


def test_bulk_creates_one_task_per_product(
    api, superuser, make_product, django_capture_on_commit_callbacks
):
    products = [make_product() for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            BULK,
            {"products": [product_ref(p) for p in products], **TEMPLATE, "image_count": 2},
        )
    assert response.status_code == 201, response.content
    data = body(response)
    assert data["pictures"] == 6
    assert len(data["ids"]) == 3
    batch = uuid.UUID(data["batch"])
    tasks = ModelImageTask.objects.filter(pk__in=data["ids"])
    assert {t.object_id for t in tasks} == {str(p.pk) for p in products}
    assert {t.batch for t in tasks} == {batch}
    assert {t.created_by for t in tasks} == {superuser}
    assert {(t.mode, t.image_count) for t in tasks} == {("template", 2)}
    assert ModelImageTask.objects.count() == 3
    assert job_names() == ["dispatch_submissions"]  # one job for the lot
    assert sorted(jobs.pending_jobs()[0].args[0]) == sorted(data["ids"])


BAD_ITEMS = {
    "unknown-pk": (lambda good, bare: "catalog.product:999999", "No catalog.product"),
    "not-a-product-model": (lambda good, bare: "auth.user:1", "not a product model"),
    "malformed": (lambda good, bare: "catalog.product", "app_label.model:pk"),
    "no-image": (lambda good, bare: product_ref(bare), "no image"),
    "duplicate": (lambda good, bare: product_ref(good), "listed twice"),
}


@pytest.mark.parametrize("case", list(BAD_ITEMS))
def test_bulk_is_all_or_nothing_with_errors_by_index(api, superuser, make_product, case):
    good, other = make_product(), make_product()
    bare = make_product(with_image=False)
    make_bad, message = BAD_ITEMS[case]
    references = [product_ref(good), product_ref(other), make_bad(good, bare)]
    response = api.post(BULK, {"products": references, **PROMPT})
    assert response.status_code == 400
    errors = body(response)["products"]
    assert set(errors) == {"2"}, errors
    assert message in " ".join(errors["2"])
    assert ModelImageTask.objects.count() == 0


def test_bulk_reports_every_bad_item_at_once(api, superuser, make_product):
    good = make_product()
    bare = make_product(with_image=False)
    references = [
        product_ref(good),
        "catalog.product:999999",
        "auth.user:1",
        product_ref(bare),
        f"  {product_ref(good).upper()} ",
    ]
    response = api.post(BULK, {"products": references, **PROMPT})
    assert response.status_code == 400
    errors = body(response)["products"]
    assert sorted(errors) == ["1", "2", "3", "4"]
    assert "No catalog.product" in errors["1"][0]
    assert "auth.user" in errors["2"][0]
    assert "no image" in errors["3"][0]
    assert "listed twice" in errors["4"][0]
    assert ModelImageTask.objects.count() == 0


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"products": [], **PROMPT}, "products", id="empty"),
        pytest.param({**PROMPT}, "products", id="missing"),
        pytest.param({"products": ["catalog.product:1"]}, "non_field_errors", id="no-options"),
        pytest.param(
            {"products": ["catalog.product:1"], **PROMPT, "image_count": 9},
            "image_count",
            id="image-count",
        ),
    ],
)
def test_bulk_validation_errors(api, data, field):
    response = api.post(BULK, data)
    assert response.status_code == 400
    assert field in body(response)
    assert ModelImageTask.objects.count() == 0
