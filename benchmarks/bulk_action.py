"""Goal 1: confirming the generate action for 1,000 products, against its floor.

The action: ``django.test.Client`` (a superuser, logged in) runs the action on the product
changelist ("select all", so the selection itself is one field), reads the hidden fields of
the page it renders, and POSTs them to the confirm URL
(``admin:catalog_product_hidream_generate``) with template mode, two pictures each and
``confirm``, exactly as a browser would; the answer must be the redirect to the new batch
and 1,000 queued tasks must exist. Everything the request does is
timed: session and user, the product lookup, the form, the bulk insert, the enqueued job,
the admin log entries, the messages.

The floor: a ``bulk_create`` of the same 1,000 task rows (built from the same products, in
one transaction) and nothing else.

Both are timed 7 times, interleaved, after a warm-up, removing the rows in between and
starting each run with garbage collected and (SQLite) the WAL checkpointed; the medians are
compared. Queries are counted with ``CaptureQueriesContext`` in a separate request, for 10
products and for 1,000: they must be the same number, at most 30.

Django refuses (HTTP 400) a request of more than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (1,000)
fields. The number of fields the page posts for 1,000 products is a figure of its own; if
it is over the limit, time and queries are measured with the limit lifted, so the other
figures stay comparable.
"""

from __future__ import annotations

import time
import uuid
from html.parser import HTMLParser

from .common import log, make_products, median, reset_data, row, settle, superuser

REPEATS = 7
PRODUCTS = 1000
SMALL = 10
MAX_QUERIES = 30


def _templates():
    from hidream_models.models import HiDreamTemplate, TemplateKind

    human, _ = HiDreamTemplate.objects.get_or_create(
        kind=TemplateKind.HUMAN, remote_id="h-001", defaults={"name_en": "Urban woman"}
    )
    scene, _ = HiDreamTemplate.objects.get_or_create(
        kind=TemplateKind.SCENE, remote_id="s-001", defaults={"name_en": "Plain white studio"}
    )
    return human, scene


class _HiddenFields(HTMLParser):
    """The hidden inputs of the form that posts to ``action``, in order."""

    def __init__(self, action: str):
        super().__init__()
        self.action, self.inside, self.fields = action, False, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.inside = attrs.get("action") == self.action
        elif tag == "input" and self.inside and attrs.get("type") == "hidden":
            self.fields.append((attrs.get("name", ""), attrs.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False


def _clear_created() -> None:
    from django.contrib.admin.models import LogEntry
    from django_tasks_db.models import DBTaskResult

    from hidream_models.models import ModelImageTask

    for model in (ModelImageTask, DBTaskResult, LogEntry):
        model.objects.all()._raw_delete(model.objects.db)


def run(bench) -> list[dict]:
    from django.conf import settings
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection, transaction
    from django.test import Client, override_settings
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from hidream_models.models import GenerationMode, ModelImageTask

    reset_data()
    user = superuser()
    human, scene = _templates()
    products = make_products(PRODUCTS)
    client = Client()
    client.force_login(user)
    url = reverse("admin:catalog_product_hidream_generate")

    changelist = reverse("admin:catalog_product_changelist")

    def form(count: int) -> dict:
        """What the action's page posts for the first ``count`` products."""
        selection = {"action": "generate_model_images", "index": "0"}
        if count == len(products):
            selection.update(select_across="1", _selected_action=str(products[0].pk))
        else:
            selection["_selected_action"] = [str(p.pk) for p in products[:count]]
        page = client.post(changelist, selection)
        if page.status_code != 200:
            raise RuntimeError(f"the action did not render its page: {page}")
        parser = _HiddenFields(url)
        parser.feed(page.content.decode())
        data: dict[str, list[str]] = {}
        for name, value in parser.fields:
            data.setdefault(name, []).append(value)
        if len(data.get("ids", [])) != count and len(data.get("ids", [])) != 1:
            raise RuntimeError(f"the page carries {data.get('ids')!r} for {count} products")
        data.update(
            mode=[GenerationMode.TEMPLATE],
            human_template=[str(human.pk)],
            scene_template=[str(scene.pk)],
            image_count=["2"],
            confirm=["Generate"],
        )
        return data

    def confirm(data: dict, count: int) -> float:
        settle()
        started = time.perf_counter()
        response = client.post(url, data)
        elapsed = time.perf_counter() - started
        if response.status_code != 302 or "batch=" not in response.get("Location", ""):
            raise RuntimeError(f"the confirm did not redirect to the batch: {response}")
        created = ModelImageTask.objects.count()
        if created != count:
            raise RuntimeError(f"{created} tasks created for {count} products")
        _clear_created()
        return elapsed

    def count_queries(data: dict, count: int) -> int:
        with CaptureQueriesContext(connection) as queries:
            confirm(data, count)
        return len(queries)

    content_type = ContentType.objects.get_for_model(type(products[0]))

    def floor() -> float:
        batch = uuid.uuid4()
        settle()
        started = time.perf_counter()
        with transaction.atomic():
            ModelImageTask.objects.bulk_create(
                [
                    ModelImageTask(
                        content_type=content_type,
                        object_id=str(product.pk),
                        product_label=str(product)[:300],
                        batch=batch,
                        source_image=product.image.name,
                        created_by=user,
                        mode=GenerationMode.TEMPLATE,
                        image_count=2,
                        human_template_id=human.remote_id,
                        scene_template_id=scene.remote_id,
                    )
                    for product in products
                ]
            )
        elapsed = time.perf_counter() - started
        _clear_created()
        return elapsed

    small, large = form(SMALL), form(PRODUCTS)
    fields = sum(len(values) for values in large.values())
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    lifted = limit is not None and fields > limit
    if lifted:
        log(f"1. the page posts {fields} fields, over DATA_UPLOAD_MAX_NUMBER_FIELDS={limit}")
    with override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=None if lifted else limit):
        confirm(small, SMALL)  # warm-up: URLconf, templates, content types
        confirm(large, PRODUCTS)
        floor()
        action_times, floor_times = [], []
        for _ in range(REPEATS):  # interleaved, so drift hits both alike
            action_times.append(confirm(large, PRODUCTS))
            floor_times.append(floor())
        queries_small = count_queries(small, SMALL)
        queries_large = count_queries(large, PRODUCTS)
    action_ms, floor_ms = 1000 * median(action_times), 1000 * median(floor_times)
    log(
        f"1. confirm {PRODUCTS}: median {action_ms:.1f} ms "
        f"(runs {', '.join(f'{1000 * t:.0f}' for t in action_times)}); floor {floor_ms:.1f} ms; "
        f"queries {queries_small} for {SMALL}, {queries_large} for {PRODUCTS}"
    )
    reset_data()
    return [
        row(
            "1. Bulk action: fields posted for 1,000 products "
            "(baseline: Django's DATA_UPLOAD_MAX_NUMBER_FIELDS)",
            fields,
            limit or 0,
            "fields",
            "≤ baseline (else HTTP 400)",
            not lifted,
        ),
        row(
            "1. Bulk action: confirm for 1,000 products, time (baseline: bulk_create floor)",
            action_ms,
            floor_ms,
            "ms",
            "ratio ≤ 2",
            action_ms <= 2 * floor_ms,
        ),
        row(
            "1. Bulk action: queries for 1,000 products (baseline: for 10 products)",
            queries_large,
            queries_small,
            "queries",
            f"= baseline and ≤ {MAX_QUERIES}",
            queries_large == queries_small and queries_large <= MAX_QUERIES,
        ),
    ]
