"""The plan's limits cover every HiDream request (#14 point 9): polls and template pages hold a
concurrent-request slot as submits do, and a sync pass stops polling a failing HiDream after
``HIDREAM_MAX_ATTEMPTS`` failures in a row instead of asking about every task.

Real parts: the simulator over HTTP, which measures the requests in flight at once
(``max_concurrency_seen``), and the slot rows in the (shared) database.
"""

from __future__ import annotations

from functools import partial

import pytest

from hidream_models import services
from hidream_models.exceptions import HiDreamBusyError
from hidream_models.models import ModelImageTask, TaskStatus
from hidream_models.services import limits
from hidream_models.services.templates import sync_templates
from tests.reliability.conftest import race

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def one_slot(settings, simulator, monkeypatch):
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = 1
    settings.HIDREAM_MAX_IMAGES_PER_MINUTE = 0
    settings.HIDREAM_CALLBACK_BASE_URL = ""  # results come by polling only
    monkeypatch.setattr(limits, "SLOT_WAIT_SECONDS", 0.3)
    return simulator


def _submitted(make_product, count: int) -> list[ModelImageTask]:
    options = services.GenerationOptions.validated({"prompt": "studio portrait"})
    tasks = services.create_tasks_for_products(
        [make_product() for _ in range(count)], options
    ).tasks
    for task in tasks:
        assert services.submit_task(task.pk) == TaskStatus.SUBMITTED
    return tasks


def test_a_poll_waits_for_a_slot_and_sends_nothing_without_one(one_slot, make_product):
    (task,) = _submitted(make_product, 1)
    one_slot.max_concurrency_seen = 0
    with limits.request_slot() as got:  # another worker's request is in flight
        assert got
        with pytest.raises(HiDreamBusyError, match="HIDREAM_MAX_CONCURRENT_REQUESTS"):
            services.sync_task(task.pk)
        assert one_slot.max_concurrency_seen == 0  # nothing reached HiDream
    assert services.sync_task(task.pk) is not None  # the slot is free: polled
    assert one_slot.max_concurrency_seen == 1


def test_a_template_sync_holds_a_slot_for_each_page(one_slot):
    one_slot.max_concurrency_seen = 0
    with limits.request_slot():
        with pytest.raises(HiDreamBusyError):
            sync_templates(with_previews=False)
        assert one_slot.max_concurrency_seen == 0
    report = sync_templates(with_previews=False)
    assert report.created > 0 and one_slot.max_concurrency_seen == 1


def test_polls_from_several_workers_stay_within_the_concurrent_limit(
    one_slot, shared_db, make_product, monkeypatch
):
    tasks = _submitted(make_product, 4)
    monkeypatch.setattr(limits, "SLOT_WAIT_SECONDS", 30.0)
    one_slot.set_faults(latency=0.2)
    one_slot.max_concurrency_seen = 0
    errors = race(shared_db, [partial(services.sync_task, task.pk) for task in tasks])
    assert errors == []
    assert one_slot.max_concurrency_seen == 1  # one at a time, as the plan allows
    assert one_slot.throttled == 0
    polled = ModelImageTask.objects.filter(last_polled_at__isnull=False).count()
    assert polled == len(tasks)


def test_a_sync_pass_stops_polling_after_max_attempts_failures_in_a_row(
    one_slot, make_product, settings
):
    settings.HIDREAM_MAX_ATTEMPTS = 3
    tasks = _submitted(make_product, 8)
    one_slot.fail_next(1000, 503, kind="results")  # HiDream's result endpoint is down
    report = services.sync_pass()
    assert report.errors == 3 and report.polling_stopped
    assert "polling stopped" in str(report)
    asked = ModelImageTask.objects.filter(
        pk__in=[task.pk for task in tasks], last_polled_at__isnull=False
    )
    assert asked.count() == 3  # the other five wait for the next pass
    one_slot.set_faults(fail_count=0)
    again = services.sync_pass()  # the next pass goes on with the others
    assert again.errors == 0 and not again.polling_stopped and again.polled >= 5
