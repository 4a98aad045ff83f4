"""Goal 6: the task changelist with 1,000 tasks × 4 stored pictures, against a plain one.

The task list: ``django.test.Client`` (a superuser) GETs
``admin:hidream_models_modelimagetask_changelist`` with 1,000 succeeded tasks of 4 stored
pictures each (the files are one shared small JPEG name), the first page as staff see it:
status badges, progress, thumbnails, the filters, the date hierarchy and the totals line.

The baseline: a plain changelist (``/bench-admin/``, ``benchmarks.bench_urls``) of 1,000
products without pictures, three plain columns, no filters, the same page size
(``ModelImageTaskAdmin.list_per_page``).

Both are timed 7 times, interleaved, after a warm-up; the medians are compared. Queries of
the task list are counted with ``CaptureQueriesContext`` with 10 tasks and with 1,000: they
must be the same number, at most 15.
"""

from __future__ import annotations

import time

from .common import (
    jpeg_bytes,
    log,
    make_products,
    make_tasks,
    median,
    reset_data,
    row,
    settle,
    store_file,
    superuser,
)

REPEATS = 7
TASKS = 1000
SMALL = 10
PICTURES = 4
MAX_QUERIES = 15


def _add_tasks(products, user, picture_name: str) -> None:
    from django.utils import timezone

    from hidream_models.models import GeneratedImage, ImageStatus, TaskStatus

    now = timezone.now()
    tasks = make_tasks(
        products,
        image_count=PICTURES,
        status=TaskStatus.SUCCEEDED,
        created_by=user,
        submitted_at=now,
        finished_at=now,
    )
    for task in tasks:
        task.sub_task_ids = [f"{task.pk.hex[:12]}-{n}" for n in range(PICTURES)]
    type(tasks[0]).objects.bulk_update(tasks, ["sub_task_ids"], batch_size=500)
    GeneratedImage.objects.bulk_create(
        [
            GeneratedImage(
                task=task,
                sub_task_id=sub_task_id,
                position=position,
                status=ImageStatus.STORED,
                remote_status=1,
                progress=1.0,
                file=picture_name,
                width=768,
                height=1024,
                bytes=50_000,
                stored_at=now,
            )
            for task in tasks
            for position, sub_task_id in enumerate(task.sub_task_ids)
        ],
        batch_size=500,
    )


def run(bench) -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from hidream_models.admin.tasks import ModelImageTaskAdmin
    from hidream_models.models import ModelImageTask
    from shop_demo.catalog.models import Product

    reset_data()
    user = superuser()
    picture = store_file("hidream/bench/result.jpg", jpeg_bytes((768, 1024)))
    client = Client()
    client.force_login(user)
    tasks_url = reverse("admin:hidream_models_modelimagetask_changelist")
    plain_url = reverse("bench_admin:catalog_product_changelist")
    page_size = ModelImageTaskAdmin.list_per_page

    def get(url: str, rows: int) -> float:
        settle()
        started = time.perf_counter()
        response = client.get(url)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"GET {url} answered {response.status_code}")
        shown = len(response.context["cl"].result_list)
        if shown != rows:
            raise RuntimeError(f"GET {url} showed {shown} rows, not {rows}")
        return elapsed

    def count_queries(url: str, rows: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            get(url, rows)
        return len(queries)

    products = make_products(TASKS, prefix="T")
    _add_tasks(products[:SMALL], user, picture)
    get(tasks_url, SMALL)  # warm-up
    queries_small = count_queries(tasks_url, SMALL)
    _add_tasks(products[SMALL:], user, picture)
    if ModelImageTask.objects.count() != TASKS:
        raise RuntimeError("the tasks were not all made")
    # The tasks keep their product's label and id; the products go, so the plain list
    # below shows exactly its 1,000 rows without pictures.
    Product.objects.all()._raw_delete(Product.objects.db)
    if len(make_products(TASKS, with_image=False, prefix="N")) != TASKS:
        raise RuntimeError("the products of the plain list were not all made")

    get(tasks_url, page_size)
    get(plain_url, page_size)
    task_times, plain_times = [], []
    for _ in range(REPEATS):
        task_times.append(get(tasks_url, page_size))
        plain_times.append(get(plain_url, page_size))
    queries_large = count_queries(tasks_url, page_size)
    queries_plain = count_queries(plain_url, page_size)
    task_ms, plain_ms = 1000 * median(task_times), 1000 * median(plain_times)
    log(
        f"6. task list: median {task_ms:.1f} ms "
        f"(runs {', '.join(f'{1000 * t:.0f}' for t in task_times)}); plain {plain_ms:.1f} ms; "
        f"queries {queries_small} with {SMALL} tasks, {queries_large} with {TASKS}; "
        f"plain list {queries_plain}"
    )
    reset_data()
    return [
        row(
            "6. Task list: changelist of 1,000 tasks × 4 pictures, time "
            "(baseline: plain changelist of 1,000 rows)",
            task_ms,
            plain_ms,
            "ms",
            "ratio ≤ 2",
            task_ms <= 2 * plain_ms,
        ),
        row(
            "6. Task list: queries with 1,000 tasks × 4 pictures (baseline: with 10 tasks)",
            queries_large,
            queries_small,
            "queries",
            f"= baseline and ≤ {MAX_QUERIES}",
            queries_large == queries_small and queries_large <= MAX_QUERIES,
        ),
    ]
