"""Deleting never strands a picture (issue 14, point 7).

Deleting a task whose picture was live left the AI picture on the storefront with nothing left
to restore the product's own photo. A published task or picture now cannot be deleted (the
admin's delete page and "Delete selected" say why, and the ORM refuses) until it is
unpublished; the admin's "Unpublish and delete" does both. Deleting removes, after the commit,
the files the app made that no other row names, and ``hidream_purge`` sweeps files under the
app's prefix that no row names (orphans), once older than a grace period.

Real admin requests, real files in a temporary media folder, the demo's publisher.
"""

from __future__ import annotations

import io
import os
import time

import pytest
from django.contrib.messages import get_messages
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import transaction
from django.db.models import ProtectedError
from django.test import TestCase
from django.urls import reverse

from hidream_models import files, services
from hidream_models.models import (
    GeneratedImage,
    HiDreamTemplate,
    ModelImageTask,
    PublishTarget,
    ReviewState,
    TemplateKind,
)
from hidream_models.services.creation import copy_for_retry
from shop_demo.catalog.models import Product, ProductImage
from tests.api.helpers import make_generated_image, make_task, make_user, png_bytes

pytestmark = pytest.mark.django_db

TASK_ADMIN = "admin:hidream_models_modelimagetask"
PICTURE_ADMIN = "admin:hidream_models_generatedimage"
REVIEWER_PERMS = (
    "hidream_models.review",
    "hidream_models.view_modelimagetask",
    "hidream_models.delete_modelimagetask",
    "hidream_models.view_generatedimage",
    "hidream_models.delete_generatedimage",
)


# -- helpers ------------------------------------------------------------------------------------


def exists(name) -> bool:
    return bool(name) and default_storage.exists(name)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def published_picture(product, target=PublishTarget.GALLERY) -> GeneratedImage:
    picture = make_generated_image(make_task(product), review_state=ReviewState.APPROVED)
    return services.publish_image(picture, target)


def action(client, admin_url, name, objs, **extra):
    data = {"action": name, "_selected_action": [str(o.pk) for o in objs], **extra}
    return client.post(reverse(f"{admin_url}_changelist"), data)


def upload(folder="sources") -> str:
    return services.store_upload(services.verify_upload(png_bytes(), "test"), folder=folder)


def api_task() -> ModelImageTask:
    """A task made from an API upload and a mask (both under the app's prefix)."""
    opts = services.GenerationOptions.validated({"prompt": "p", "image_count": 1})
    return services.create_task_for_image(opts, image_name=upload(), mask_name=upload("masks"))


def aged(name: str, seconds: float) -> str:
    """Make a stored file look ``seconds`` old."""
    then = time.time() - seconds
    os.utime(default_storage.path(name), (then, then))
    return name


def purge(*args) -> str:
    out = io.StringIO()
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("hidream_purge", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# -- refused while published ------------------------------------------------------------------


@pytest.mark.parametrize("admin_url", [TASK_ADMIN, PICTURE_ADMIN])
def test_the_delete_page_refuses_a_published_picture_and_says_why(
    admin_client, make_product, admin_url
):
    picture = published_picture(make_product(name="Red dress"))
    obj = picture.task if admin_url == TASK_ADMIN else picture
    url = reverse(f"{admin_url}_delete", args=[obj.pk])

    page = admin_client.get(url).content.decode()
    assert "Picture #1 of “Red dress” is published (Product gallery)" in page
    assert "Unpublish and delete" in page
    response = admin_client.post(url, {"post": "yes"})

    assert response.status_code == 200  # the same page again, nothing deleted
    assert GeneratedImage.objects.filter(pk=picture.pk).exists()
    assert ModelImageTask.objects.filter(pk=picture.task_id).exists()
    assert ProductImage.objects.filter(generated_image=picture).exists()


@pytest.mark.parametrize("admin_url", [TASK_ADMIN, PICTURE_ADMIN])
def test_delete_selected_refuses_when_one_is_published(admin_client, make_product, admin_url):
    product = make_product(name="Blue coat")
    published = published_picture(product, PublishTarget.MAIN)
    plain = make_generated_image(make_task(product))
    objs = [published.task, plain.task] if admin_url == TASK_ADMIN else [published, plain]

    response = action(admin_client, admin_url, "delete_selected", objs, post="yes")

    assert response.status_code == 200
    assert "is published (Main product image)" in response.content.decode()
    assert GeneratedImage.objects.filter(pk__in=[published.pk, plain.pk]).count() == 2
    product.refresh_from_db()
    assert product.image_ai_generated


def test_the_orm_refuses_to_delete_a_published_picture_or_its_task(make_product):
    picture = published_picture(make_product(name="Wool hat"))
    with pytest.raises(ProtectedError, match="unpublish it"), transaction.atomic():
        picture.delete()
    with pytest.raises(ProtectedError), transaction.atomic():
        ModelImageTask.objects.filter(pk=picture.task_id).delete()
    assert GeneratedImage.objects.filter(pk=picture.pk, published_as="gallery").exists()


# -- unpublish and delete ----------------------------------------------------------------------


@pytest.mark.parametrize("admin_url", [TASK_ADMIN, PICTURE_ADMIN])
def test_unpublish_and_delete_restores_the_product_and_removes_the_apps_files(
    admin_client, make_product, admin_url, django_capture_on_commit_callbacks
):
    product = make_product(name="Linen shirt")
    original = product.image.name
    picture = published_picture(product, PublishTarget.MAIN)
    product.refresh_from_db()
    copy = product.image.name
    obj = picture.task if admin_url == TASK_ADMIN else picture

    confirm = action(admin_client, admin_url, "unpublish_and_delete", [obj])
    assert confirm.status_code == 200
    assert "Picture #1 of “Linen shirt” (Main product image)" in confirm.content.decode()
    assert GeneratedImage.objects.filter(pk=picture.pk, published_as="main").exists()

    with django_capture_on_commit_callbacks(execute=True):
        done = action(
            admin_client, admin_url, "unpublish_and_delete", [obj], confirm_unpublish_delete="yes"
        )

    assert done.status_code == 302
    assert any("deleted" in text for text in messages_of(done))
    assert not GeneratedImage.objects.filter(pk=picture.pk).exists()
    product.refresh_from_db()
    assert product.image.name == original and not product.image_ai_generated
    assert exists(original), "the product's own photo was deleted"
    assert not exists(copy), "the published copy stayed"
    assert not exists(picture.file.name), "the generated picture stayed"


def test_unpublish_and_delete_needs_the_product_change_permission(client, make_product):
    picture = published_picture(make_product(name="Green skirt"))
    client.force_login(make_user("rita", REVIEWER_PERMS))  # no catalog.change_product

    response = action(
        client, TASK_ADMIN, "unpublish_and_delete", [picture.task], confirm_unpublish_delete="yes"
    )

    assert response.status_code == 302
    [message] = messages_of(response)
    assert "Not deleted" in message and "change permission" in message
    assert GeneratedImage.objects.filter(pk=picture.pk, published_as="gallery").exists()


def test_unpublish_and_delete_is_offered_only_with_delete_and_review(client, make_product):
    make_generated_image(make_task(make_product()))
    without_review = [p for p in REVIEWER_PERMS if p != "hidream_models.review"]
    client.force_login(make_user("vera", without_review))
    page = client.get(reverse(f"{TASK_ADMIN}_changelist")).content.decode()
    assert "delete_selected" in page and "unpublish_and_delete" not in page
    client.force_login(make_user("rita", REVIEWER_PERMS))
    page = client.get(reverse(f"{TASK_ADMIN}_changelist")).content.decode()
    assert "unpublish_and_delete" in page


# -- the files of what is deleted ------------------------------------------------------------


def test_deleting_a_task_removes_its_files_after_commit_but_not_what_others_use(
    make_product, django_capture_on_commit_callbacks
):
    original = api_task()
    result = make_generated_image(original).file.name
    retry = copy_for_retry(original)  # shares the upload and the mask
    source, mask = original.source_image.name, original.mask.name
    product = make_product()
    product_task = make_task(product)
    product_result = make_generated_image(product_task).file.name

    with django_capture_on_commit_callbacks(execute=False) as pending:
        original.delete()
        product_task.delete()
    assert exists(result) and exists(product_result), "deleted before the commit"
    for callback in pending:
        callback()

    assert not exists(result) and not exists(product_result)
    assert exists(source) and exists(mask), "the retry's upload was deleted"
    assert exists(product.image.name), "the product's own photo was deleted"

    with django_capture_on_commit_callbacks(execute=True):
        retry.delete()
    assert not exists(source) and not exists(mask)


# -- hidream_purge sweeps orphans --------------------------------------------------------------


def test_purge_removes_old_orphans_under_the_prefix_only(make_product):
    product = make_product()
    hour = 3600
    old_orphan = aged(default_storage.save("hidream/stray/lost.png", ContentFile(b"x")), 2 * hour)
    young_orphan = default_storage.save("hidream/sources/being-written.png", ContentFile(b"x"))
    outside = aged(default_storage.save("products/not-ours.png", ContentFile(b"x")), 2 * hour)
    named = [
        aged(make_generated_image(make_task(product)).file.name, 2 * hour),
        aged(api_task().source_image.name, 2 * hour),
        aged(
            HiDreamTemplate.objects.create(
                kind=TemplateKind.HUMAN,
                remote_id="h-001",
                preview=default_storage.save("hidream/templates/h-001.png", ContentFile(b"x")),
            ).preview.name,
            2 * hour,
        ),
    ]
    published = published_picture(product)
    copy = aged(published.publish_state[files.STATE_FILES][0], 2 * hour)
    aged(product.image.name, 2 * hour)

    assert "would delete" in (dry := purge("--older-than", "30", "--dry-run"))
    assert "1 orphaned files" in dry and exists(old_orphan)
    assert "1 orphaned files" in purge("--older-than", "30")

    assert not exists(old_orphan)
    for name in (young_orphan, outside, copy, product.image.name, *named):
        assert exists(name), f"{name} was swept"

    aged(young_orphan, 2 * hour)
    assert "0 orphaned files" in purge("--older-than", "30", "--orphans-older-than", "180")
    assert "1 orphaned files" in purge("--older-than", "30", "--orphans-older-than", "60")
    assert not exists(young_orphan)
    assert Product.objects.filter(pk=product.pk).exists()
