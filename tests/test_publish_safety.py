"""Publishing never feeds an AI picture back to HiDream, and is all or nothing (issue 14,
points 5 and 6).

Point 5: after "make main image" the product's photo is the AI picture; the next run sent it to
HiDream as if it were the product. The publisher's ``original_photo`` now gives back the photo
it replaced, the app never sends one of its own files, and it refuses, saying why, when there
is no original. Point 6: the demo publisher deleted files inside the transaction, so a
rolled-back publish left the product on a deleted file; files now go after the commit, and a
publisher that raises leaves rows and files as they were. (Ten publishes racing on one product:
``reliability/test_publish_race.py``.)

Real files in a temporary media folder, the demo's ``CatalogPublisher``, the real admin and API.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.urls import reverse
from rest_framework.test import APIClient

from hidream_models import files, services
from hidream_models.exceptions import HiDreamValidationError
from hidream_models.models import (
    GenerationMode,
    HiDreamTemplate,
    ModelImageTask,
    PublishTarget,
    TemplateKind,
)
from hidream_models.publishing import HiDreamPublisher, _load
from shop_demo.catalog.models import Product, ProductImage
from shop_demo.catalog.publishing import CatalogPublisher
from tests.api.helpers import make_generated_image, make_task
from tests.reliability.conftest import stored_files

GENERATE_URL = "admin:catalog_product_hidream_generate"


# -- publishers of other shops ----------------------------------------------------------------


class ResultAsMainPublisher(HiDreamPublisher):
    """Puts the generated file itself on the product, and keeps the default original_photo."""

    def publish(self, image, target):
        product = Product.objects.get(pk=image.task.object_id)
        previous = product.image.name
        Product.objects.filter(pk=product.pk).update(image=image.file.name)
        return {"previous": previous}

    def unpublish(self, image, state):
        Product.objects.filter(pk=image.task.object_id).update(image=state["previous"])


class FailsAfterPublishing(CatalogPublisher):
    """Does all the demo's work (the copy included), then fails."""

    def publish(self, image, target):
        super().publish(image, target)
        raise RuntimeError("the shop's search index is down")


class FailsAfterUnpublishing(CatalogPublisher):
    def unpublish(self, image, state):
        super().unpublish(image, state)
        raise RuntimeError("the shop's search index is down")


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_publisher():
    _load.cache_clear()
    yield
    _load.cache_clear()


def use_publisher(settings, publisher: type) -> None:
    settings.HIDREAM_PUBLISHER = f"{__name__}.{publisher.__name__}"
    _load.cache_clear()


def picture_of(product, position=0):
    """A stored picture of a new task for ``product``, approved."""
    task = make_task(product)
    return make_generated_image(task, position, review_state="approved")


def options():
    return services.GenerationOptions.validated({"prompt": "in a park", "image_count": 1})


def published_copies() -> list[str]:
    root = default_storage.path(f"{files.storage_prefix()}{files.PUBLISHED_FOLDER}")
    return [str(path) for path in stored_files(root)]


# -- 5. the photo sent is the product's own ---------------------------------------------------


@pytest.mark.django_db
def test_after_make_main_image_the_next_run_sends_the_original_photo(make_product, admin_client):
    product = make_product(name="Red dress")
    original = product.image.name
    picture = picture_of(product)
    services.approve_image(picture, publish=PublishTarget.MAIN)
    product.refresh_from_db()
    assert product.image.name != original and product.image_ai_generated

    # Python
    report = services.create_tasks_for_products([product], options())
    assert [task.source_image.name for task in report.tasks] == [original]
    # the admin's generate action
    human = HiDreamTemplate.objects.create(kind=TemplateKind.HUMAN, remote_id="h-001")
    scene = HiDreamTemplate.objects.create(kind=TemplateKind.SCENE, remote_id="s-001")
    response = admin_client.post(
        reverse(GENERATE_URL),
        {
            "ids": str(product.pk),
            "mode": GenerationMode.TEMPLATE,
            "human_template": str(human.pk),
            "scene_template": str(scene.pk),
            "image_count": "1",
            "confirm": "Generate",
        },
    )
    assert response.status_code == 302, response.content[:500]
    # the API
    api = APIClient()
    api.force_authenticate(get_user_model().objects.get(username="admin"))
    created = api.post(
        "/api/hidream/tasks/",
        {"product": f"catalog.product:{product.pk}", "prompt": "in a park"},
        format="json",
    )
    assert created.status_code == 201, created.content[:500]

    runs = ModelImageTask.objects.filter(object_id=str(product.pk)).exclude(pk=picture.task_id)
    assert runs.count() == 3
    assert {task.source_image.name for task in runs} == {original}


@pytest.mark.django_db
def test_a_picture_of_the_app_is_never_sent_as_the_product_photo(settings, make_product):
    """A publisher that puts the generated file itself on the product, and does not say where
    the original is: the app refuses, saying why, rather than send the AI picture."""
    use_publisher(settings, ResultAsMainPublisher)
    product = make_product(name="Blue coat")
    picture = picture_of(product)
    services.approve_image(picture, publish=PublishTarget.MAIN)
    product.refresh_from_db()
    assert product.image.name == picture.file.name

    before = ModelImageTask.objects.count()
    report = services.create_tasks_for_products([product], options())
    assert report.tasks == []
    [(skipped, reason)] = report.skipped
    assert skipped == product and "made with HiDream" in reason and "original" in reason
    with pytest.raises(HiDreamValidationError) as refused:
        services.create_task_for_image(options(), image_name=picture.file.name, product=product)
    assert "original" in str(refused.value.errors["product"][0])
    assert ModelImageTask.objects.count() == before


@pytest.mark.django_db
def test_a_main_image_published_on_a_product_without_photo_leaves_none_to_send(make_product):
    product = make_product(name="Scarf", with_image=False)
    task = services.create_task_for_image(
        options(), image_url="https://images.example.com/scarf.jpg", product=product
    )
    services.approve_image(
        make_generated_image(task, review_state="approved"), publish=PublishTarget.MAIN
    )
    product.refresh_from_db()
    assert product.image.name and product.image_ai_generated

    report = services.create_tasks_for_products([product], options())
    assert report.tasks == [] and "original" in report.skipped[0][1]


@pytest.mark.django_db
def test_published_copies_are_the_apps_and_recorded_on_the_picture(
    make_product, django_capture_on_commit_callbacks
):
    product = make_product(name="Green skirt")
    gallery, main = picture_of(product), picture_of(product, 1)
    services.approve_image(gallery, publish=PublishTarget.GALLERY)
    services.approve_image(main, publish=PublishTarget.MAIN)
    gallery.refresh_from_db()
    main.refresh_from_db()
    product.refresh_from_db()
    item = ProductImage.objects.get(generated_image=gallery)

    prefix = f"{files.storage_prefix()}{files.PUBLISHED_FOLDER}/"
    for picture, copy in ((gallery, item.image.name), (main, product.image.name)):
        assert copy.startswith(prefix) and files.is_app_file(copy)
        assert picture.publish_state[files.STATE_FILES] == [copy]
        assert default_storage.exists(copy)
    assert not files.is_app_file(gallery.task.source_image.name), "the shop's photo is not"

    with django_capture_on_commit_callbacks(execute=True):
        services.unpublish_image(gallery)
        services.unpublish_image(main)
    assert published_copies() == []


# -- 6. all or nothing ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_publisher_that_raises_leaves_rows_and_files_as_they_were(settings, make_product):
    product = make_product(name="Linen shirt")
    original = product.image.name
    first, second = picture_of(product), picture_of(product, 1)
    services.approve_image(first, publish=PublishTarget.MAIN)
    first.refresh_from_db()
    product.refresh_from_db()
    first_copy, first_state = product.image.name, first.publish_state
    use_publisher(settings, FailsAfterPublishing)

    # Publishing the second first takes the first off (which deleted its copy, inside the
    # transaction), then fails.
    with pytest.raises(RuntimeError, match="search index"):
        services.approve_image(second, publish=PublishTarget.MAIN)

    product.refresh_from_db()
    first.refresh_from_db()
    second.refresh_from_db()
    assert product.image.name == first_copy and product.image_ai_generated
    assert first.published_as == PublishTarget.MAIN and first.publish_state == first_state
    assert second.published_as == "" and second.reviewed_at is None  # the approval too
    assert default_storage.exists(first_copy), "the product points at a deleted file"
    assert default_storage.exists(original)
    assert published_copies() == [default_storage.path(first_copy)], "the failed copy stayed"


@pytest.mark.django_db(transaction=True)
def test_an_unpublish_that_raises_keeps_the_picture_and_its_file(settings, make_product):
    product = make_product(name="Wool hat")
    picture = picture_of(product)
    services.approve_image(picture, publish=PublishTarget.GALLERY)
    item = ProductImage.objects.get(generated_image=picture)
    use_publisher(settings, FailsAfterUnpublishing)

    with pytest.raises(RuntimeError, match="search index"):
        services.unpublish_image(picture)

    picture.refresh_from_db()
    assert picture.published_as == PublishTarget.GALLERY
    assert ProductImage.objects.filter(pk=item.pk).exists()
    assert default_storage.exists(item.image.name), "the gallery shows a deleted file"


@pytest.mark.django_db(transaction=True)
def test_a_successful_unpublish_deletes_the_copy_after_the_commit(make_product):
    product = make_product(name="Wool hat")
    picture = picture_of(product)
    services.approve_image(picture, publish=PublishTarget.MAIN)
    product.refresh_from_db()
    copy = product.image.name
    services.unpublish_image(picture)
    assert not default_storage.exists(copy)
    assert default_storage.exists(picture.file.name), "the generated picture itself went"
    product.refresh_from_db()
    assert default_storage.exists(product.image.name)


@pytest.mark.django_db
def test_the_api_refuses_a_product_with_no_original_photo_with_400_naming_why(
    settings, make_product
):
    use_publisher(settings, ResultAsMainPublisher)
    product = make_product(name="Grey hat")
    services.approve_image(picture_of(product), publish=PublishTarget.MAIN)
    api = APIClient()
    api.force_authenticate(get_user_model().objects.create_superuser("boss", "b@x.org", "pw"))
    before = ModelImageTask.objects.count()
    ref = f"catalog.product:{product.pk}"

    created = api.post("/api/hidream/tasks/", {"product": ref, "prompt": "p"}, format="json")
    assert created.status_code == 400, created.content[:500]
    assert "original photo" in created.json()["product"][0]
    bulk = api.post("/api/hidream/tasks/bulk/", {"products": [ref], "prompt": "p"}, format="json")
    assert bulk.status_code == 400, bulk.content[:500]
    assert "original photo" in bulk.json()["products"]["0"][0]
    assert ModelImageTask.objects.count() == before
