"""The task list's rows: each row shows its own task's pictures, stored ones only, in order.

The list reads the pictures of a page in one ``values_list`` query
(``display.attach_picture_summaries``) instead of prefetching model rows; these tests pin
what that must still get right: the grouping by task, the order, and the filtering.
"""

from __future__ import annotations

import re

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from hidream_models.admin import display
from hidream_models.models import (
    GeneratedImage,
    GenerationMode,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
)
from shop_demo.catalog.models import Product
from tests.conftest import make_image_bytes

pytestmark = pytest.mark.django_db

TASKS_URL = "admin:hidream_models_modelimagetask_changelist"


def _task(label: str, pictures: list[tuple[int, str]]) -> ModelImageTask:
    """A task with pictures given as (position, status), created in the order given."""
    task = ModelImageTask.objects.create(
        content_type=ContentType.objects.get_for_model(Product),
        object_id=label,
        product_label=label,
        mode=GenerationMode.TEMPLATE,
        human_template_id="h-001",
        scene_template_id="s-001",
        image_count=len(pictures),
        status=TaskStatus.PARTIAL,
        sub_task_ids=[f"{label}-{n}" for n in range(len(pictures))],
    )
    for position, status in pictures:
        name = ""
        if status == ImageStatus.STORED:
            name = default_storage.save(
                f"hidream/{label}-{position}.jpg", ContentFile(make_image_bytes())
            )
        GeneratedImage.objects.create(
            task=task,
            sub_task_id=f"{label}-{position}",
            position=position,
            status=status,
            file=name,
        )
    return task


def test_summaries_are_grouped_by_task_and_in_position_order(django_assert_num_queries):
    first = _task("first", [(2, "stored"), (0, "stored"), (1, "failed")])
    second = _task("second", [(1, "stored"), (0, "pending")])
    empty = _task("empty", [])
    tasks = list(ModelImageTask.objects.filter(pk__in=[first.pk, second.pk, empty.pk]))
    with django_assert_num_queries(1):
        display.attach_picture_summaries(tasks)
    got = {
        task.product_label: [
            (p.position, p.status, bool(p.file_name)) for p in task.picture_summaries
        ]
        for task in tasks
    }
    assert got == {
        "first": [(0, "stored", True), (1, "failed", False), (2, "stored", True)],
        "second": [(0, "pending", False), (1, "stored", True)],
        "empty": [],
    }


def test_no_tasks_no_query(django_assert_num_queries):
    with django_assert_num_queries(0):
        display.attach_picture_summaries([])


def test_each_row_shows_its_own_stored_pictures_in_order(admin_client):
    first = _task("first", [(1, "stored"), (0, "stored"), (2, "failed")])
    second = _task("second", [(0, "pending"), (1, "stored")])
    html = admin_client.get(reverse(TASKS_URL)).content.decode()
    rows = {
        label: row
        for row in re.findall(r"<tr>.*?</tr>", html, re.S)
        for label in ("first", "second")
        if f">{label}<" in row
    }

    def srcs(row: str) -> list[str]:
        return re.findall(r'<img src="([^"]+)"[^>]*class="hidream-thumb"', row)

    expected_first = [
        image.file.url for image in first.images.filter(status="stored").order_by("position")
    ]
    assert srcs(rows["first"]) == expected_first and len(expected_first) == 2
    assert srcs(rows["second"]) == [second.images.get(position=1).file.url]
    assert "2 of 3" in rows["first"] and "1 of 2" in rows["second"]
    assert 'alt="Generated picture 1"' in rows["first"]
    assert 'alt="Generated picture 2"' in rows["second"]
