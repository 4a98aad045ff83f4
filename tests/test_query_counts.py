"""Query counts that must not grow with the data: the bulk generate action and the task list.

The benchmarks (``make bench``, docs/performance.md) time these with 1,000 rows; here the
counts are asserted on small and larger inputs, so a query per product or per task (an N+1)
fails CI.
"""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from hidream_models.models import (
    GeneratedImage,
    GenerationMode,
    HiDreamTemplate,
    ImageStatus,
    ModelImageTask,
    TaskStatus,
    TemplateKind,
)
from shop_demo.catalog.models import Product
from tests.conftest import make_image_bytes

pytestmark = pytest.mark.django_db

CONFIRM_URL = "admin:catalog_product_hidream_generate"
TASKS_URL = "admin:hidream_models_modelimagetask_changelist"
MAX_CONFIRM_QUERIES = 30
MAX_TASK_LIST_QUERIES = 15


def _products(count: int) -> list[Product]:
    """``count`` products sharing one stored photo (the action only needs its name)."""
    name = default_storage.save("products/shared.jpg", ContentFile(make_image_bytes()))
    start = Product.objects.count()
    Product.objects.bulk_create(
        Product(name=f"Dress {start + n}", sku=f"QC-{start + n:05d}", price="10.00", image=name)
        for n in range(count)
    )
    return list(Product.objects.order_by("-pk")[:count])


def _confirm_queries(client, count: int) -> int:
    """Queries of one confirm of the generate action for ``count`` new products."""
    human, _ = HiDreamTemplate.objects.get_or_create(kind=TemplateKind.HUMAN, remote_id="h-001")
    scene, _ = HiDreamTemplate.objects.get_or_create(kind=TemplateKind.SCENE, remote_id="s-001")
    products = _products(count)
    data = {
        "ids": [str(product.pk) for product in products],
        "mode": GenerationMode.TEMPLATE,
        "human_template": str(human.pk),
        "scene_template": str(scene.pk),
        "image_count": "2",
        "confirm": "Generate",
    }
    before = ModelImageTask.objects.count()
    with CaptureQueriesContext(connection) as queries:
        response = client.post(reverse(CONFIRM_URL), data)
    assert response.status_code == 302, response.content[:500]
    assert "batch=" in response["Location"]
    assert ModelImageTask.objects.count() == before + count
    return len(queries)


def test_generate_confirm_queries_do_not_grow_with_products(admin_client):
    _confirm_queries(admin_client, 2)  # warm-up: content types, session, first-use caches
    small = _confirm_queries(admin_client, 10)
    large = _confirm_queries(admin_client, 100)
    assert large == small, f"{small} queries for 10 products but {large} for 100"
    assert large <= MAX_CONFIRM_QUERIES


def _add_tasks(count: int, user) -> None:
    """``count`` succeeded tasks, each with 4 stored pictures (one shared file name)."""
    picture = default_storage.save("hidream/shared.jpg", ContentFile(make_image_bytes()))
    content_type = ContentType.objects.get_for_model(Product)
    now = timezone.now()
    tasks = ModelImageTask.objects.bulk_create(
        ModelImageTask(
            content_type=content_type,
            object_id=str(n),
            product_label=f"Dress {n}",
            mode=GenerationMode.TEMPLATE,
            human_template_id="h-001",
            scene_template_id="s-001",
            image_count=4,
            status=TaskStatus.SUCCEEDED,
            sub_task_ids=[f"sub-{n}-{i}" for i in range(4)],
            created_by=user,
            submitted_at=now,
            finished_at=now,
        )
        for n in range(count)
    )
    GeneratedImage.objects.bulk_create(
        GeneratedImage(
            task=task,
            sub_task_id=sub_task_id,
            position=position,
            status=ImageStatus.STORED,
            progress=1.0,
            file=picture,
            width=600,
            height=800,
            stored_at=now,
        )
        for task in tasks
        for position, sub_task_id in enumerate(task.sub_task_ids)
    )


def _task_list_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse(TASKS_URL))
    assert response.status_code == 200
    assert response.context["cl"].result_list
    return len(queries)


def test_task_list_queries_do_not_grow_with_tasks(admin_client, admin_user):
    _add_tasks(10, admin_user)
    _task_list_queries(admin_client)  # warm-up
    small = _task_list_queries(admin_client)
    _add_tasks(50, admin_user)  # 60 tasks: more than a page (list_per_page = 50)
    large = _task_list_queries(admin_client)
    assert ModelImageTask.objects.count() == 60
    assert large == small, f"{small} queries with 10 tasks but {large} with 60"
    assert large <= MAX_TASK_LIST_QUERIES
