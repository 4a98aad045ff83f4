"""``manage.py hidream_purge --older-than DAYS [--dry-run]``: forget old callbacks and failed
tasks with their files, never what the shop still shows or still needs."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.utils import timezone

from hidream_models import services
from hidream_models.models import (
    CallbackEvent,
    GeneratedImage,
    ImageStatus,
    ModelImageTask,
    PublishTarget,
    ReviewState,
    TaskStatus,
)
from hidream_models.services.creation import copy_for_retry
from tests.api.helpers import make_generated_image, png_bytes

pytestmark = pytest.mark.django_db

OLD = timedelta(days=40)
NEW = timedelta(days=2)


def aged(obj, age, field="created_at"):
    """Move a row's timestamp into the past (auto_now_add cannot be set on create)."""
    type(obj).objects.filter(pk=obj.pk).update(**{field: timezone.now() - age})
    obj.refresh_from_db()
    return obj


def upload(folder="sources") -> str:
    return services.store_upload(services.verify_upload(png_bytes(), "test"), folder=folder)


def api_task(status, age, *, mask=False, **fields):
    """A task made from an API upload (its source under hidream/sources/)."""
    options = services.GenerationOptions.validated({"prompt": "p", "image_count": 1})
    task = services.create_task_for_image(
        options, image_name=upload(), mask_name=upload("masks") if mask else ""
    )
    ModelImageTask.objects.filter(pk=task.pk).update(status=status, **fields)
    return aged(task, age)


def product_task(product, status, age):
    options = services.GenerationOptions.validated({"prompt": "p", "image_count": 1})
    task = services.create_tasks_for_products([product], options).tasks[0]
    ModelImageTask.objects.filter(pk=task.pk).update(status=status)
    return aged(task, age)


def failed_picture(task, position=0, *, with_file=True):
    """A failed picture that still has a file (e.g. a stored copy judged bad later)."""
    image = make_generated_image(task, position, status=ImageStatus.STORED, with_file=with_file)
    GeneratedImage.objects.filter(pk=image.pk).update(status=ImageStatus.FAILED)
    image.refresh_from_db()
    return image


def event(task, age):
    return aged(CallbackEvent.objects.create(task=task, body="{}"), age, "received_at")


def purge(*args) -> str:
    out = io.StringIO()
    # A deleted task's files go once its deletion commits: run those hooks here.
    with TestCase.captureOnCommitCallbacks(execute=True):
        call_command("hidream_purge", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def exists(name) -> bool:
    return bool(name) and default_storage.exists(name)


@pytest.fixture
def world(make_product):
    """Old and new rows of every kind the purge must tell apart."""
    product = make_product()
    w = {"product": product}
    keeper = api_task(TaskStatus.SUCCEEDED, OLD)
    w["keeper"] = keeper
    w["old_event"] = event(keeper, OLD)
    w["new_event"] = event(keeper, NEW)

    w["old_failed"] = api_task(TaskStatus.FAILED, OLD, mask=True)
    w["old_failed_pic"] = failed_picture(w["old_failed"])
    w["old_failed_event"] = event(w["old_failed"], OLD)

    w["old_failed_product"] = product_task(product, TaskStatus.FAILED, OLD)
    w["old_failed_product_pic"] = failed_picture(w["old_failed_product"])

    w["new_failed"] = api_task(TaskStatus.FAILED, NEW)
    w["new_failed_pic"] = failed_picture(w["new_failed"])

    w["old_succeeded"] = api_task(TaskStatus.SUCCEEDED, OLD)
    w["old_succeeded_pic"] = make_generated_image(w["old_succeeded"])
    w["old_partial"] = api_task(TaskStatus.PARTIAL, OLD)
    w["old_partial_pic"] = make_generated_image(w["old_partial"])

    # A failed task whose picture was published anyway (built directly).
    w["old_failed_published"] = api_task(TaskStatus.FAILED, OLD)
    w["published_pic"] = make_generated_image(
        w["old_failed_published"],
        review_state=ReviewState.APPROVED,
        published_as=PublishTarget.GALLERY,
        published_at=timezone.now() - OLD,
    )
    return w


def test_purge_deletes_old_events_and_old_failed_tasks_with_their_files(world):
    w = world
    doomed_files = [
        w["old_failed"].source_image.name,
        w["old_failed"].mask.name,
        w["old_failed_pic"].file.name,
        w["old_failed_product_pic"].file.name,
    ]
    assert all(exists(name) for name in doomed_files)
    assert doomed_files[0].startswith("hidream/sources/")
    assert doomed_files[1].startswith("hidream/masks/")
    product_photo = w["product"].image.name
    assert w["old_failed_product"].source_image.name == product_photo

    output = purge("--older-than", "30")

    assert "deleted 2 callback events, 2 failed tasks, 4 files" in output, output
    assert not CallbackEvent.objects.filter(pk=w["old_event"].pk).exists()
    assert not CallbackEvent.objects.filter(pk=w["old_failed_event"].pk).exists()
    assert CallbackEvent.objects.filter(pk=w["new_event"].pk).exists()
    for key in ("old_failed", "old_failed_product"):
        assert not ModelImageTask.objects.filter(pk=w[key].pk).exists(), key
    for name in doomed_files:
        assert not exists(name), f"{name} was kept"
    # The product's own photo is never deleted, whatever task sent it.
    assert exists(product_photo)
    w["product"].refresh_from_db()
    assert w["product"].image.name == product_photo


def test_purge_keeps_new_succeeded_partial_and_published(world):
    w = world
    purge("--older-than", "30")
    for key in ("keeper", "new_failed", "old_succeeded", "old_partial", "old_failed_published"):
        task = ModelImageTask.objects.filter(pk=w[key].pk).first()
        assert task is not None, f"{key} was deleted"
        assert exists(task.source_image.name), f"the source of {key} was deleted"
    for key in ("new_failed_pic", "old_succeeded_pic", "old_partial_pic", "published_pic"):
        image = GeneratedImage.objects.get(pk=w[key].pk)
        assert exists(image.file.name), f"the file of {key} was deleted"


def test_dry_run_counts_and_deletes_nothing(world):
    before = (
        CallbackEvent.objects.count(),
        ModelImageTask.objects.count(),
        GeneratedImage.objects.count(),
        sorted(default_storage.listdir("hidream/sources")[1]),
    )
    output = purge("--older-than", "30", "--dry-run")
    assert "would delete 2 callback events, 2 failed tasks, 4 files" in output, output
    after = (
        CallbackEvent.objects.count(),
        ModelImageTask.objects.count(),
        GeneratedImage.objects.count(),
        sorted(default_storage.listdir("hidream/sources")[1]),
    )
    assert after == before
    assert exists(world["old_failed_pic"].file.name)


def test_the_cut_off_moves_with_days(world):
    assert "would delete 3 callback events, 3 failed tasks" in purge(
        "--older-than", "1", "--dry-run"
    )
    assert "would delete 0 callback events, 0 failed tasks, 0 files" in purge(
        "--older-than", "365", "--dry-run"
    )


@pytest.mark.parametrize("days", ["-1", "-0.5"])
def test_negative_days_is_a_command_error(world, days):
    with pytest.raises(CommandError) as caught:
        purge("--older-than", days)
    assert "--older-than" in str(caught.value)
    assert ModelImageTask.objects.filter(pk=world["old_failed"].pk).exists()


@pytest.mark.parametrize("days", ["soon", ""])
def test_days_that_are_not_a_number_are_refused(world, days):
    with pytest.raises(CommandError):
        purge("--older-than", days)
    assert ModelImageTask.objects.filter(pk=world["old_failed"].pk).exists()


def test_days_that_are_no_usable_number_are_a_command_error_not_a_crash(world):
    """argparse's ``type=float`` takes "nan", "inf" and huge values; the cut-off arithmetic
    then raises ValueError/OverflowError (a traceback) instead of a CommandError."""
    crashes = {}
    for days in ("nan", "inf", "1e400", "1000000"):
        try:
            purge("--older-than", days)
        except CommandError:
            continue
        except (ValueError, OverflowError) as exc:
            crashes[days] = f"{type(exc).__name__}: {exc}"
    assert crashes == {}
    assert ModelImageTask.objects.filter(pk=world["old_failed"].pk).exists()
    assert CallbackEvent.objects.filter(pk=world["old_event"].pk).exists()


def test_older_than_is_required():
    with pytest.raises(CommandError):
        purge()


def test_a_source_shared_with_a_retry_is_kept(make_product):
    """A retry copies the failed task's ``source_image`` (and mask) name: the file is shared.
    Purging the old failed original must not delete a file the retry still sends."""
    original = api_task(TaskStatus.FAILED, OLD, mask=True)
    retry = copy_for_retry(original)
    assert retry.source_image.name == original.source_image.name
    assert retry.mask.name == original.mask.name

    purge("--older-than", "30")

    assert not ModelImageTask.objects.filter(pk=original.pk).exists()
    retry.refresh_from_db()
    assert exists(retry.source_image.name), "the retry's source image was deleted"
    assert exists(retry.mask.name), "the retry's mask was deleted"
