"""Reviewing generated pictures and publishing them to products with the demo's publisher.

Pictures are real files made with Pillow (or, in the integration test, real results of the
simulator on loopback). The demo settings name ``CatalogPublisher``; tests that need another
publisher point ``HIDREAM_PUBLISHER`` elsewhere and clear ``publishing._load``'s cache.
"""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from hidream_models import services, signals
from hidream_models.models import (
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    PublishTarget,
    ReviewState,
    TaskStatus,
)
from hidream_models.publishing import HiDreamPublisher, _load
from hidream_models.services import HiDreamActionRefused
from shop_demo.catalog.models import Product, ProductImage
from tests.conftest import make_image_bytes, wait_for

QUEUE_URL = "admin:hidream_models_review_queue"
DECISION_URL = "admin:hidream_models_review_decision"
PICTURES_URL = "admin:hidream_models_generatedimage_changelist"
TASK_URL = "admin:hidream_models_modelimagetask_change"
API_IMAGES = "/api/hidream/images/"
REVIEW = "hidream_models.review"
VIEW = ("hidream_models.view_generatedimage", "hidream_models.view_modelimagetask")
PUBLISH_ACTIONS = ("approve_to_gallery", "approve_as_main", "unpublish_pictures")


# -- a publisher that fails, for the rollback tests ------------------------------------------


class FailingPublisher(HiDreamPublisher):
    """Writes to the shop's tables, then fails: nothing of it may survive."""

    def publish(self, image, target):
        product = Product.objects.get(pk=image.task.object_id)
        ProductImage.objects.create(product=product, image="products/gallery/half-done.jpg")
        product.image_alt_text = "half published"
        product.save(update_fields=["image_alt_text"])
        raise RuntimeError("the shop's photo storage is down")

    def unpublish(self, image, state):
        Product.objects.filter(pk=image.task.object_id).update(image_alt_text="half undone")
        raise RuntimeError("the shop's photo storage is down")


# -- helpers and fixtures --------------------------------------------------------------------


def make_staff(username, perms=()):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def html_of(response) -> str:
    return response.content.decode()


def template_options(image_count=2):
    return services.GenerationOptions.validated(
        {
            "template": {"human_template_id": "h-001", "scene_template_id": "s-001"},
            "image_count": image_count,
        }
    )


def make_picture(product, position=0, status=ImageStatus.STORED, *, task=None, **fields):
    """A picture of a task for ``product``; a real JPEG in storage when stored."""
    if task is None:
        task = services.create_tasks_for_products([product], template_options()).tasks[0]
        ModelImageTask.objects.filter(pk=task.pk).update(status=TaskStatus.SUCCEEDED)
        task.refresh_from_db()
    image = GeneratedImage(
        task=task,
        sub_task_id=f"{task.pk}-{position}",
        position=position,
        status=status,
        remote_status=1 if status == ImageStatus.STORED else 0,
        progress=1.0 if status == ImageStatus.STORED else 0.4,
        **fields,
    )
    if status == ImageStatus.STORED:
        data = make_image_bytes(size=(300, 400), color=(20 + 60 * position, 160, 90))
        image.file.save(f"{task.pk}/{position}.jpg", ContentFile(data), save=False)
        image.width, image.height, image.bytes = 300, 400, len(data)
        image.stored_at = timezone.now()
    image.save()
    return image


def decide(client, image, decision, next_url=None):
    data = {"decision": decision}
    if next_url is not None:
        data["next"] = next_url
    return client.post(reverse(DECISION_URL, args=[image.pk]), data)


def post_action(client, action, images):
    data = {"action": action, "index": "0", "_selected_action": [str(i.pk) for i in images]}
    return client.post(reverse(PICTURES_URL), data)


def action_names(response) -> list[str]:
    form = response.context.get("action_form")
    if form is None:
        return []
    return [value for value, _label in form.fields["action"].choices if value]


def file_exists(name: str) -> bool:
    return bool(name) and default_storage.exists(name)


def same_file(name_a: str, name_b: str) -> bool:
    with default_storage.open(name_a, "rb") as a, default_storage.open(name_b, "rb") as b:
        data_a, data_b = a.read(), b.read()
    with Image.open(io.BytesIO(data_b)) as picture:
        picture.load()
    return data_a == data_b


@pytest.fixture(autouse=True)
def _fresh_publisher():
    _load.cache_clear()
    yield
    _load.cache_clear()


@pytest.fixture
def reviewer(db):
    # Publishing changes the product: the shop's change permission on it counts too.
    return make_staff("rita", (REVIEW, *VIEW, "catalog.change_product"))


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.fixture
def api(reviewer):
    client = APIClient()
    client.force_authenticate(reviewer)
    return client


@pytest.fixture
def product(make_product):
    product = make_product(name="Red dress")
    Product.objects.filter(pk=product.pk).update(image_alt_text="Red dress, front view")
    product.refresh_from_db()
    return product


@pytest.fixture
def received():
    """Every review/publish signal, as (name, image pk, target, username)."""
    seen = []
    handlers = {}

    def listen(name):
        def handler(sender, image, user=None, target=None, **kwargs):
            assert sender is GeneratedImage
            seen.append((name, image.pk, target, getattr(user, "username", None)))

        handlers[name] = handler
        getattr(signals, name).connect(handler)

    for name in ("image_approved", "image_rejected", "image_published", "image_unpublished"):
        listen(name)
    yield seen
    for name, handler in handlers.items():
        getattr(signals, name).disconnect(handler)


# -- 1. permissions --------------------------------------------------------------------------


@pytest.mark.django_db
def test_review_needs_the_review_permission(client, product):
    picture = make_picture(product)
    client.force_login(make_staff("viewer", VIEW))

    assert client.get(reverse(QUEUE_URL)).status_code == 403
    assert decide(client, picture, "approve").status_code == 403
    api = APIClient()
    api.force_authenticate(get_user_model().objects.get(username="viewer"))
    assert api.post(f"{API_IMAGES}{picture.pk}/approve/", {}, format="json").status_code == 403
    assert api.post(f"{API_IMAGES}{picture.pk}/reject/").status_code == 403
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED and picture.reviewed_by is None


@pytest.mark.django_db
def test_review_works_with_the_review_permission(reviewer_client, api, reviewer, product):
    first, second = make_picture(product), make_picture(product, 1)
    assert reviewer_client.get(reverse(QUEUE_URL)).status_code == 200

    response = decide(reviewer_client, first, "approve")
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.review_state == ReviewState.APPROVED and first.reviewed_by == reviewer

    response = api.post(f"{API_IMAGES}{second.pk}/approve/", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["review_state"] == "approved"
    assert response.json()["reviewed_by"] == "rita"


# -- 2. approve and reject in the admin ------------------------------------------------------


@pytest.mark.django_db
def test_decision_url_approves_and_rejects_and_follows_next(reviewer_client, product):
    picture = make_picture(product)
    task_page = reverse(TASK_URL, args=[picture.task_id])

    response = decide(reviewer_client, picture, "approve", next_url=task_page)
    assert response.status_code == 302 and response["Location"] == task_page
    assert any("Approve" in text for text in messages_of(response))
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.APPROVED
    assert picture.reviewed_at is not None and picture.published_as == ""

    response = decide(reviewer_client, picture, "reject", next_url="https://evil.example.com/")
    assert response.status_code == 302
    assert response["Location"] == reverse(QUEUE_URL)
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.REJECTED

    response = decide(reviewer_client, picture, "rubbish")
    assert any("Unknown decision" in text for text in messages_of(response))
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.REJECTED


@pytest.mark.django_db
def test_decision_url_answers_get_with_a_redirect(reviewer_client, product):
    picture = make_picture(product)
    response = reviewer_client.get(reverse(DECISION_URL, args=[picture.pk]))
    assert response.status_code == 302 and response["Location"] == reverse(QUEUE_URL)
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED


@pytest.mark.django_db
def test_picture_list_actions_approve_and_reject(reviewer_client, product):
    pictures = [make_picture(product, n) for n in range(3)]
    listing = reviewer_client.get(reverse(PICTURES_URL))
    assert listing.status_code == 200
    offered = action_names(listing)
    assert {"approve_pictures", "reject_pictures", *PUBLISH_ACTIONS} <= set(offered), offered

    response = post_action(reviewer_client, "approve_pictures", pictures[:2])
    assert response.status_code == 302
    assert "2 pictures updated." in messages_of(response)
    states = [GeneratedImage.objects.get(pk=p.pk).review_state for p in pictures]
    assert states == [ReviewState.APPROVED, ReviewState.APPROVED, ReviewState.UNREVIEWED]

    response = post_action(reviewer_client, "reject_pictures", pictures[1:])
    assert response.status_code == 302
    states = [GeneratedImage.objects.get(pk=p.pk).review_state for p in pictures]
    assert states == [ReviewState.APPROVED, ReviewState.REJECTED, ReviewState.REJECTED]


@pytest.mark.django_db
def test_picture_list_actions_publish_and_unpublish(reviewer_client, product):
    gallery, main = make_picture(product), make_picture(product, 1)
    response = post_action(reviewer_client, "approve_to_gallery", [gallery])
    assert response.status_code == 302
    response = post_action(reviewer_client, "approve_as_main", [main])
    assert response.status_code == 302
    gallery.refresh_from_db()
    main.refresh_from_db()
    assert gallery.published_as == PublishTarget.GALLERY
    assert main.published_as == PublishTarget.MAIN
    assert ProductImage.objects.filter(generated_image=gallery).exists()

    post_action(reviewer_client, "unpublish_pictures", [gallery, main])
    assert not ProductImage.objects.exists()
    product.refresh_from_db()
    assert product.image.name == "products/dress-1.jpg" and not product.image_ai_generated


@pytest.mark.django_db
def test_picture_list_actions_need_the_review_permission(client, product):
    picture = make_picture(product)
    client.force_login(make_staff("viewer", VIEW))
    listing = client.get(reverse(PICTURES_URL))
    assert listing.status_code == 200
    assert not {"approve_pictures", "reject_pictures", *PUBLISH_ACTIONS} & set(
        action_names(listing)
    )
    post_action(client, "approve_pictures", [picture])
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED


# -- 3. the review queue ---------------------------------------------------------------------


@pytest.mark.django_db
def test_review_queue_lists_unreviewed_stored_pictures_beside_the_product_photo(
    reviewer_client, make_product
):
    first, second = make_product(name="Blue coat"), make_product(name="Green skirt")
    waiting = [make_picture(first), make_picture(second)]
    approved = make_picture(first, 1, review_state=ReviewState.APPROVED)
    rejected = make_picture(second, 1, review_state=ReviewState.REJECTED)
    pending = make_picture(first, 2, status=ImageStatus.PENDING)
    failed = make_picture(second, 2, status=ImageStatus.FAILED, failure_reason="moderated")

    response = reviewer_client.get(reverse(QUEUE_URL))

    assert response.status_code == 200
    html = html_of(response)
    assert "2 pictures wait for review." in html
    assert [image.pk for image in response.context["page"]] == [p.pk for p in waiting]
    sections = html.split('class="hidream-review-row"')[1:]
    assert len(sections) == 2
    for picture, section in zip(waiting, sections, strict=True):
        section = section.split("</section>")[0]
        product_photo = picture.task.source_image.url
        assert product_photo == Product.objects.get(pk=picture.task.object_id).image.url
        assert f'src="{product_photo}"' in section
        assert f'src="{picture.file.url}"' in section
        assert section.index(product_photo) < section.index(picture.file.url)
        assert picture.task.product_label in section
        assert reverse(DECISION_URL, args=[picture.pk]) in section
        for value in ("approve", "approve_gallery", "approve_main", "reject"):
            assert f'value="{value}"' in section
    for other in (approved, rejected):
        assert other.file.url not in html
    for other in (pending, failed):
        assert reverse(DECISION_URL, args=[other.pk]) not in html


@pytest.mark.django_db
def test_reviewed_pictures_leave_the_queue(reviewer_client, product):
    picture = make_picture(product)
    queue = reverse(QUEUE_URL)
    assert picture.file.url in html_of(reviewer_client.get(queue))
    response = decide(reviewer_client, picture, "approve", next_url=queue)
    assert response["Location"] == queue
    html = html_of(reviewer_client.get(queue))
    assert picture.file.url not in html
    assert "Nothing to review" in html


# -- 4. publishing with the demo publisher ---------------------------------------------------


@pytest.mark.django_db
def test_gallery_round_trip(reviewer_client, product, received, django_capture_on_commit_callbacks):
    picture = make_picture(product)
    with django_capture_on_commit_callbacks(execute=True):
        response = decide(reviewer_client, picture, "approve_gallery")
    assert response.status_code == 302
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.APPROVED
    assert picture.published_as == PublishTarget.GALLERY and picture.published_at
    [item] = ProductImage.objects.filter(product=product)
    assert item.ai_generated is True
    assert item.generated_image_id == picture.pk
    assert "AI" in item.alt_text and "Red dress" in item.alt_text
    assert item.image.name != picture.file.name, "the gallery must get its own copy"
    assert file_exists(item.image.name) and same_file(picture.file.name, item.image.name)
    product.refresh_from_db()
    assert product.image.name == "products/dress-1.jpg" and not product.image_ai_generated

    copy = item.image.name
    with django_capture_on_commit_callbacks(execute=True):
        response = decide(reviewer_client, picture, "unpublish")
    assert response.status_code == 302
    picture.refresh_from_db()
    assert picture.published_as == "" and picture.published_at is None
    assert picture.publish_state == {}
    assert picture.review_state == ReviewState.APPROVED
    assert not ProductImage.objects.exists()
    assert not file_exists(copy), "the gallery copy was left in storage"
    assert file_exists(picture.file.name), "the generated picture itself was deleted"
    assert received == [
        ("image_approved", picture.pk, None, "rita"),
        ("image_published", picture.pk, "gallery", "rita"),
        ("image_unpublished", picture.pk, None, "rita"),
    ]


@pytest.mark.django_db
def test_main_image_round_trip_restores_exactly(
    reviewer_client, product, django_capture_on_commit_callbacks
):
    original = product.image.name
    picture = make_picture(product)

    decide(reviewer_client, picture, "approve_main")
    product.refresh_from_db()
    picture.refresh_from_db()
    assert picture.published_as == PublishTarget.MAIN
    assert product.image.name != original
    assert file_exists(product.image.name) and same_file(picture.file.name, product.image.name)
    assert product.image_ai_generated is True
    assert "AI" in product.image_alt_text and "Red dress" in product.image_alt_text
    copy = product.image.name

    with django_capture_on_commit_callbacks(execute=True):  # the copy goes after the commit
        decide(reviewer_client, picture, "unpublish")
    product.refresh_from_db()
    assert product.image.name == original
    assert product.image_alt_text == "Red dress, front view"
    assert product.image_ai_generated is False
    assert file_exists(original)
    assert not file_exists(copy)


@pytest.mark.django_db
def test_a_second_main_replaces_the_first_and_unpublishing_restores_the_original(
    reviewer_client, product, received, django_capture_on_commit_callbacks
):
    original = product.image.name
    first, second = make_picture(product), make_picture(product, 1)

    decide(reviewer_client, first, "approve_main")
    product.refresh_from_db()
    first_copy = product.image.name
    with django_capture_on_commit_callbacks(execute=True):
        decide(reviewer_client, second, "approve_main")

    first.refresh_from_db()
    second.refresh_from_db()
    product.refresh_from_db()
    assert first.published_as == "" and first.review_state == ReviewState.APPROVED
    assert second.published_as == PublishTarget.MAIN
    assert product.image.name not in (original, first_copy)
    assert same_file(second.file.name, product.image.name)
    assert not file_exists(first_copy)
    assert ("image_unpublished", first.pk, None, "rita") in received
    assert received[-1] == ("image_published", second.pk, "main", "rita")

    decide(reviewer_client, second, "unpublish")
    product.refresh_from_db()
    assert product.image.name == original
    assert product.image_alt_text == "Red dress, front view"
    assert product.image_ai_generated is False
    assert GeneratedImage.objects.filter(published_as=PublishTarget.MAIN).count() == 0


@pytest.mark.django_db
def test_rejecting_a_published_picture_unpublishes_it(
    reviewer_client, product, received, django_capture_on_commit_callbacks
):
    original = product.image.name
    gallery, main = make_picture(product), make_picture(product, 1)
    decide(reviewer_client, gallery, "approve_gallery")
    decide(reviewer_client, main, "approve_main")
    assert ProductImage.objects.count() == 1

    received.clear()
    with django_capture_on_commit_callbacks(execute=True):
        decide(reviewer_client, gallery, "reject")
        decide(reviewer_client, main, "reject")

    for picture in (gallery, main):
        picture.refresh_from_db()
        assert picture.review_state == ReviewState.REJECTED
        assert picture.published_as == ""
    assert not ProductImage.objects.exists()
    product.refresh_from_db()
    assert product.image.name == original and not product.image_ai_generated
    assert received == [
        ("image_unpublished", gallery.pk, None, "rita"),
        ("image_rejected", gallery.pk, None, "rita"),
        ("image_unpublished", main.pk, None, "rita"),
        ("image_rejected", main.pk, None, "rita"),
    ]


@pytest.mark.django_db
def test_task_page_offers_review_and_unpublish_buttons(reviewer_client, product):
    picture = make_picture(product)
    decide(reviewer_client, picture, "approve_gallery")
    html = html_of(reviewer_client.get(reverse(TASK_URL, args=[picture.task_id])))
    assert reverse(DECISION_URL, args=[picture.pk]) in html
    for value in ("approve", "approve_gallery", "approve_main", "reject", "unpublish"):
        assert f'value="{value}"' in html
    assert "Published: Product gallery" in html


# -- 5. the API ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_approve_as_main_and_unpublish(
    api, product, received, django_capture_on_commit_callbacks
):
    original = product.image.name
    picture = make_picture(product)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API_IMAGES}{picture.pk}/approve/", {"publish": "main"}, "json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["review_state"] == "approved" and data["published_as"] == "main"
    assert data["published_at"]
    product.refresh_from_db()
    assert product.image.name != original and product.image_ai_generated
    copy = product.image.name

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API_IMAGES}{picture.pk}/unpublish/")
    assert response.status_code == 200, response.content
    assert response.json()["published_as"] == "" and response.json()["published_at"] is None
    product.refresh_from_db()
    assert product.image.name == original
    assert product.image_alt_text == "Red dress, front view" and not product.image_ai_generated
    assert not file_exists(copy)
    assert received == [
        ("image_approved", picture.pk, None, "rita"),
        ("image_published", picture.pk, "main", "rita"),
        ("image_unpublished", picture.pk, None, "rita"),
    ]

    again = api.post(f"{API_IMAGES}{picture.pk}/unpublish/")
    assert again.status_code == 409
    assert "not published" in again.json()["detail"]


@pytest.mark.django_db
def test_api_approve_to_gallery_then_null_publish_approves_only(api, product):
    gallery, plain = make_picture(product), make_picture(product, 1)
    response = api.post(f"{API_IMAGES}{gallery.pk}/approve/", {"publish": "gallery"}, "json")
    assert response.status_code == 200, response.content
    assert response.json()["published_as"] == "gallery"
    assert ProductImage.objects.filter(generated_image=gallery, ai_generated=True).count() == 1

    response = api.post(f"{API_IMAGES}{plain.pk}/approve/", {"publish": None}, "json")
    assert response.status_code == 200, response.content
    assert response.json()["published_as"] == ""
    assert ProductImage.objects.count() == 1

    response = api.post(f"{API_IMAGES}{plain.pk}/approve/", {"publish": "banner"}, "json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_only_stored_pictures_can_be_approved(api, reviewer_client, product):
    pending = make_picture(product, status=ImageStatus.PENDING)
    failed = make_picture(product, 1, status=ImageStatus.FAILED)
    for picture in (pending, failed):
        for publish in (None, "gallery"):
            response = api.post(f"{API_IMAGES}{picture.pk}/approve/", {"publish": publish}, "json")
            assert response.status_code == 409, response.content
        response = decide(reviewer_client, picture, "approve_main")
        assert any("Only stored pictures" in text for text in messages_of(response))
        picture.refresh_from_db()
        assert picture.review_state == ReviewState.UNREVIEWED and picture.published_as == ""
    assert not ProductImage.objects.exists()


# -- 6. without a publisher ------------------------------------------------------------------


@pytest.mark.django_db
def test_without_a_publisher_publishing_is_refused_and_not_offered(
    settings, api, reviewer_client, product
):
    settings.HIDREAM_PUBLISHER = ""
    picture = make_picture(product)

    response = api.post(f"{API_IMAGES}{picture.pk}/approve/", {"publish": "gallery"}, "json")
    assert response.status_code == 409, response.content
    assert "HIDREAM_PUBLISHER" in response.json()["detail"]
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED, "approve was not all-or-nothing"

    response = decide(reviewer_client, picture, "approve_main")
    assert response.status_code == 302
    assert any("Publishing is not set up" in text for text in messages_of(response))
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED and picture.published_as == ""
    product.refresh_from_db()
    assert product.image.name == "products/dress-1.jpg"

    queue = html_of(reviewer_client.get(reverse(QUEUE_URL)))
    assert 'value="approve"' in queue and 'value="reject"' in queue
    assert 'value="approve_gallery"' not in queue and 'value="approve_main"' not in queue
    task_page = html_of(reviewer_client.get(reverse(TASK_URL, args=[picture.task_id])))
    assert 'value="approve"' in task_page
    assert 'value="approve_gallery"' not in task_page and 'value="approve_main"' not in task_page

    # Approving without publishing still works.
    response = api.post(f"{API_IMAGES}{picture.pk}/approve/", {}, "json")
    assert response.status_code == 200 and response.json()["review_state"] == "approved"


@pytest.mark.django_db
def test_without_a_publisher_the_picture_list_offers_no_publish_actions(
    settings, reviewer_client, product
):
    settings.HIDREAM_PUBLISHER = ""
    picture = make_picture(product)
    offered = action_names(reviewer_client.get(reverse(PICTURES_URL)))
    assert not set(PUBLISH_ACTIONS) & set(offered), offered
    assert "approve_pictures" in offered and "reject_pictures" in offered, offered

    post_action(reviewer_client, "approve_as_main", [picture])
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED and picture.published_as == ""


# -- 7. a publisher that fails ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_failing_publisher_rolls_everything_back(settings, make_product, received):
    product = make_product(name="Red dress")
    reviewer = make_staff("rita", (REVIEW, *VIEW, "catalog.change_product"))
    picture = make_picture(product)
    settings.HIDREAM_PUBLISHER = f"{__name__}.FailingPublisher"
    _load.cache_clear()

    with pytest.raises(RuntimeError, match="photo storage is down"):
        services.approve_image(picture, user=reviewer, publish=PublishTarget.GALLERY)

    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED
    assert picture.reviewed_by is None and picture.reviewed_at is None
    assert picture.published_as == "" and picture.publish_state == {}
    assert not ProductImage.objects.exists()
    assert Product.objects.get(pk=product.pk).image_alt_text == ""
    assert received == []

    api = APIClient()
    api.raise_request_exception = False
    api.force_authenticate(reviewer)
    response = api.post(f"{API_IMAGES}{picture.pk}/approve/", {"publish": "main"}, "json")
    assert response.status_code >= 400
    picture.refresh_from_db()
    assert picture.review_state == ReviewState.UNREVIEWED and picture.published_as == ""
    product.refresh_from_db()
    assert product.image.name == "products/dress-1.jpg" and product.image_alt_text == ""
    assert received == []


@pytest.mark.django_db(transaction=True)
def test_a_failing_unpublish_keeps_the_picture_published(settings, make_product, received):
    product = make_product(name="Red dress")
    reviewer = make_staff("rita", (REVIEW, *VIEW, "catalog.change_product"))
    picture = make_picture(product)
    services.approve_image(picture, user=reviewer, publish=PublishTarget.GALLERY)
    received.clear()
    settings.HIDREAM_PUBLISHER = f"{__name__}.FailingPublisher"
    _load.cache_clear()

    with pytest.raises(RuntimeError):
        services.reject_image(picture, user=reviewer)

    picture.refresh_from_db()
    assert picture.review_state == ReviewState.APPROVED
    assert picture.published_as == PublishTarget.GALLERY and picture.publish_state
    assert ProductImage.objects.filter(generated_image=picture).count() == 1
    assert Product.objects.get(pk=product.pk).image_alt_text == ""
    assert received == []


def test_publish_refuses_an_unknown_target_and_an_unapproved_picture(db, product):
    picture = make_picture(product)
    with pytest.raises(HiDreamActionRefused, match="approved"):
        services.publish_image(picture, PublishTarget.GALLERY)
    services.approve_image(picture)
    with pytest.raises(HiDreamActionRefused):
        services.publish_image(picture, "banner")
    assert not ProductImage.objects.exists()


# -- 8. the whole walk with the simulator ----------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_simulator_pictures_are_reviewed_and_published(
    simulator, settings, client, make_product, run_jobs
):
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    settings.HIDREAM_POLL_INTERVAL = 1
    simulator.delay = 0.2
    product = make_product(name="Linen shirt")
    original = product.image.name
    task = services.create_tasks_for_products([product], template_options(2)).tasks[0]
    run_jobs()

    def stored():
        services.sync_pass()
        run_jobs()
        return GeneratedImage.objects.filter(task=task, status=ImageStatus.STORED).count() == 2

    wait_for(stored, timeout=20, interval=0.2, message="two stored pictures")
    first, second = GeneratedImage.objects.filter(task=task).order_by("position")
    client.force_login(make_staff("rita", (REVIEW, *VIEW, "catalog.change_product")))

    queue = html_of(client.get(reverse(QUEUE_URL)))
    assert f'src="{first.file.url}"' in queue and f'src="{second.file.url}"' in queue
    assert f'src="{product.image.url}"' in queue

    decide(client, first, "approve_main")
    decide(client, second, "approve_gallery")
    product.refresh_from_db()
    assert product.image_ai_generated and same_file(first.file.name, product.image.name)
    [item] = product.gallery.all()
    assert item.ai_generated and same_file(second.file.name, item.image.name)

    decide(client, first, "reject")
    decide(client, second, "unpublish")
    product.refresh_from_db()
    assert product.image.name == original and not product.image_ai_generated
    assert not product.gallery.exists()
