"""``images/``: list with filters, retrieve, and review (approve / reject) with signals."""

from __future__ import annotations

import pytest

from hidream_models import signals
from hidream_models.models import GeneratedImage, ImageStatus, ReviewState, TaskStatus
from tests.api.helpers import IMAGES, body, image_url, product_ref

pytestmark = pytest.mark.django_db


def ids_of(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in body(response)["results"]]


@pytest.fixture
def pictures(make_product, task_factory, image_factory):
    """Two tasks of two products: stored, failed, pending and reviewed pictures."""
    first, second = make_product(), make_product()
    task_a = task_factory(first, TaskStatus.PARTIAL, remote_task_id="rt-a")
    task_b = task_factory(second, TaskStatus.SUCCEEDED, remote_task_id="rt-b")
    return {
        "a0": image_factory(task_a, 0, ImageStatus.STORED),
        "a1": image_factory(task_a, 1, ImageStatus.FAILED, failure_reason="blurry"),
        "a2": image_factory(task_a, 2, ImageStatus.PENDING),
        "b0": image_factory(task_b, 0, ImageStatus.STORED, review_state=ReviewState.APPROVED),
        "b1": image_factory(task_b, 1, ImageStatus.STORED, review_state=ReviewState.REJECTED),
        "task_a": task_a,
        "task_b": task_b,
        "first": first,
        "second": second,
    }


def pks(pictures, *names) -> list[int]:
    return [pictures[name].pk for name in names]


def test_list_newest_task_first_then_by_position(api, pictures):
    # "task" orders by the task's own ordering (newest first); task_b was created last
    assert ids_of(api.get(IMAGES)) == pks(pictures, "b0", "b1", "a0", "a1", "a2")


def test_filter_by_task(api, pictures):
    response = api.get(IMAGES, {"task": str(pictures["task_b"].pk)})
    assert ids_of(response) == pks(pictures, "b0", "b1")


def test_filter_by_product(api, pictures):
    response = api.get(IMAGES, {"product": product_ref(pictures["first"])})
    assert ids_of(response) == pks(pictures, "a0", "a1", "a2")


def test_filter_by_status(api, pictures):
    assert ids_of(api.get(IMAGES, {"status": "stored"})) == pks(pictures, "b0", "b1", "a0")
    both = api.get(f"{IMAGES}?status=failed&status=pending")
    assert ids_of(both) == pks(pictures, "a1", "a2")


def test_filter_by_review_state(api, pictures):
    assert ids_of(api.get(IMAGES, {"review_state": "approved"})) == pks(pictures, "b0")
    assert ids_of(api.get(IMAGES, {"review_state": "unreviewed"})) == pks(
        pictures, "a0", "a1", "a2"
    )


def test_filters_combine(api, pictures):
    response = api.get(
        IMAGES, {"product": product_ref(pictures["second"]), "review_state": "rejected"}
    )
    assert ids_of(response) == pks(pictures, "b1")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"task": "not-a-uuid"}, "task"),
        ({"status": "lost"}, "status"),
        ({"review_state": "maybe"}, "review_state"),
    ],
)
def test_bad_filter_values_are_field_errors(api, pictures, params, field):
    response = api.get(IMAGES, params)
    assert response.status_code == 400
    assert field in body(response)


def test_retrieve(api, pictures):
    stored = pictures["a0"]
    response = api.get(image_url(stored))
    assert response.status_code == 200
    data = body(response)
    assert data["id"] == stored.pk
    assert data["task"] == str(pictures["task_a"].pk)
    assert data["file_url"] == f"http://testserver{stored.file.url}"
    assert data["remote_url"] == stored.remote_url
    assert (data["width"], data["height"]) == (stored.width, stored.height)
    assert data["review_state"] == "unreviewed"
    assert data["reviewed_by"] is None and data["reviewed_at"] is None


def test_retrieve_unknown_is_404(api):
    assert api.get(image_url(999999)).status_code == 404


@pytest.fixture
def received():
    """Every image_approved / image_rejected signal sent during the test."""
    seen = []

    def approved(sender, image, user, **kwargs):
        seen.append(("approved", sender, image.pk, user.username, image.review_state))

    def rejected(sender, image, user, **kwargs):
        seen.append(("rejected", sender, image.pk, user.username, image.review_state))

    signals.image_approved.connect(approved)
    signals.image_rejected.connect(rejected)
    yield seen
    signals.image_approved.disconnect(approved)
    signals.image_rejected.disconnect(rejected)


@pytest.mark.parametrize("verdict", ["approved", "rejected"])
def test_review_sets_state_who_and_when_and_sends_the_signal(
    api, pictures, received, verdict, django_capture_on_commit_callbacks
):
    image = pictures["a0"]
    action = "approve" if verdict == "approved" else "reject"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{image_url(image)}{action}/")
    assert response.status_code == 200, response.content
    data = body(response)
    assert data["id"] == image.pk
    assert data["review_state"] == verdict
    assert data["reviewed_by"] == "boss"
    assert data["reviewed_at"]
    image.refresh_from_db()
    assert image.review_state == verdict
    assert image.reviewed_by.username == "boss"
    assert image.reviewed_at is not None
    assert received == [(verdict, GeneratedImage, image.pk, "boss", verdict)]


def test_a_review_can_be_changed(api, pictures, received, django_capture_on_commit_callbacks):
    image = pictures["b0"]  # approved already
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{image_url(image)}reject/")
    assert response.status_code == 200
    assert body(response)["review_state"] == "rejected"
    assert [event[0] for event in received] == ["rejected"]


@pytest.mark.parametrize("name", ["a1", "a2"], ids=["failed", "pending"])
@pytest.mark.parametrize("action", ["approve", "reject"])
def test_review_of_a_picture_not_stored_is_409(
    api, pictures, received, name, action, django_capture_on_commit_callbacks
):
    image = pictures[name]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{image_url(image)}{action}/")
    assert response.status_code == 409
    assert "Only stored pictures" in body(response)["detail"]
    image.refresh_from_db()
    assert image.review_state == ReviewState.UNREVIEWED
    assert image.reviewed_by is None and image.reviewed_at is None
    assert received == []


def test_review_of_unknown_picture_is_404(api):
    assert api.post(f"{image_url(999999)}approve/").status_code == 404
