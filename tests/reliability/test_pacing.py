"""HiDream's plan limits: a thousand tasks paced through a throttling HiDream, and the two
mechanisms underneath (``book_submission`` and ``request_slot``) one by one."""

from __future__ import annotations

import math
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections
from django.db.models import Count, Max

from hidream_models import services
from hidream_models.client import HiDreamClient
from hidream_models.models import (
    HiDreamRateReservation,
    HiDreamRequestSlot,
    ModelImageTask,
    TaskStatus,
)
from hidream_models.services import limits
from shop_demo.catalog.models import Product
from tests import jobs
from tests.conftest import make_image_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _forget_known_slots(monkeypatch):
    # limits._known_slots remembers, per process, that the slot rows exist; the database is
    # emptied between tests, so start every test from "unknown" (and put it back after).
    # test_request_slot_recreates_slot_rows_that_disappeared is about exactly this.
    monkeypatch.setattr(limits, "_known_slots", 0)


# --- a thousand tasks against a throttling HiDream ------------------------------------------

TASKS = 1000
PICTURES_PER_WINDOW = 200  # N
WINDOW = 1.0  # W, seconds (HIDREAM_RATE_WINDOW's minimum)
CONCURRENT = 5
WORKERS = 8


def _pop_due_job():
    """Take the earliest job that is due from the shared job list, like a worker would."""
    now = time.time()
    with jobs._lock:
        due = [job for job in jobs._jobs if jobs._due(job) <= now]
        if not due:
            return None
        job = min(due, key=jobs._due)
        jobs._jobs.remove(job)
        return job


class WorkerPool:
    """Threads acting as job workers over the shared job list, each with its own connection."""

    def __init__(self, shared_db, count: int):
        self.shared_db, self.errors, self.busy = shared_db, [], 0
        self._stop, self._lock = threading.Event(), threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, name=f"worker-{n}") for n in range(count)
        ]

    def __enter__(self) -> WorkerPool:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def idle(self) -> bool:
        with self._lock:
            return self.busy == 0 and not jobs.pending_jobs()

    def _run(self) -> None:
        self.shared_db.bind()
        try:
            while not self._stop.is_set():
                with self._lock:
                    job = _pop_due_job()
                    self.busy += job is not None
                if job is None:
                    time.sleep(0.005)
                    continue
                try:
                    job.task.call(*job.args, **job.kwargs)
                except Exception as exc:  # a job that raises is a bug: kept, then asserted
                    self.errors.append(f"{job.task.name}{job.args}: {exc!r}")
                finally:
                    with self._lock:
                        self.busy -= 1
        finally:
            connections.close_all()


def _wait_until_settled(pool: WorkerPool, timeout: float) -> None:
    """Until no task waits to be submitted, or nothing is left that could move one on."""
    unfinished = ModelImageTask.objects.filter(
        status__in=(TaskStatus.QUEUED, TaskStatus.SUBMITTING)
    )
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline and unfinished.exists():
        if pool.idle():
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.0:
                return  # stranded: no job will ever pick the rest up
        else:
            idle_since = None
        time.sleep(0.2)


def _max_in_window(moments: list[float], window: float) -> int:
    """The most moments that fall in any half-open interval of ``window`` seconds."""
    moments = sorted(moments)
    best, first = 0, 0
    for last, moment in enumerate(moments):
        while moments[first] <= moment - window:
            first += 1
        best = max(best, last - first + 1)
    return best


def test_a_thousand_tasks_through_a_throttling_hidream_end_with_none_failed(
    simulator, settings, shared_db, monkeypatch
):
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    settings.HIDREAM_MAX_IMAGES_PER_MINUTE = PICTURES_PER_WINDOW
    settings.HIDREAM_RATE_WINDOW = WINDOW
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = CONCURRENT
    simulator.send_callbacks = False
    simulator.delay = 30  # nothing needs to finish: this is about submitting
    simulator.throttle(images=PICTURES_PER_WINDOW, window=WINDOW, concurrent=CONCURRENT)

    # What HiDream accepted, and when (the simulator's clock).
    accepted_at: list[float] = []
    settle = simulator._settle_submit

    def recording_settle(ticket, accepted):
        if accepted:
            accepted_at.append(time.monotonic())
        settle(ticket, accepted)

    monkeypatch.setattr(simulator, "_settle_submit", recording_settle)

    # Our side: the most submits in flight at once, across all workers.
    in_flight = {"now": 0, "max": 0}
    flight_lock = threading.Lock()
    submit = HiDreamClient.submit_model_image

    def counting_submit(client, **kwargs):
        with flight_lock:
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
        try:
            return submit(client, **kwargs)
        finally:
            with flight_lock:
                in_flight["now"] -= 1

    monkeypatch.setattr(HiDreamClient, "submit_model_image", counting_submit)

    image = default_storage.save(
        "products/shared.jpg", ContentFile(make_image_bytes(size=(90, 120)))
    )
    Product.objects.bulk_create(
        Product(name=f"Paced dress {n}", sku=f"PACE-{n:04d}", price="19.90", image=image)
        for n in range(TASKS)
    )
    options = services.GenerationOptions.validated({"prompt": "studio", "image_count": 1})
    started = time.monotonic()
    report = services.create_tasks_for_products(Product.objects.all(), options)
    assert len(report.tasks) == TASKS

    with WorkerPool(shared_db, WORKERS) as pool:
        _wait_until_settled(pool, timeout=60)
    elapsed = time.monotonic() - started

    by_status = dict(
        ModelImageTask.objects.values_list("status").annotate(n=Count("pk")).order_by()
    )
    assert pool.errors == [], f"{len(pool.errors)} jobs raised, tasks: {by_status}"
    assert by_status == {TaskStatus.SUBMITTED: TASKS}, by_status
    assert simulator.accepted_submits == TASKS == len(accepted_at)
    assert ModelImageTask.objects.aggregate(m=Max("attempts"))["m"] == 1  # none used up
    assert ModelImageTask.objects.exclude(remote_task_id=None).count() == TASKS

    # The pace: never more than N pictures in any W seconds, so at least ceil(T/N) windows.
    assert _max_in_window(accepted_at, WINDOW) <= PICTURES_PER_WINDOW
    windows = math.ceil(TASKS / PICTURES_PER_WINDOW)
    assert max(accepted_at) - min(accepted_at) >= (windows - 1) * WINDOW - 0.05
    # The app paced itself: HiDream's 429s are rare accidents (timing between the two
    # clocks, a slot freed a moment before HiDream counts the request out), not the rule.
    assert simulator.throttled <= TASKS // 20, simulator.throttled
    # Our own concurrency limit held across the workers.
    assert in_flight["max"] <= CONCURRENT
    print(
        f"\n{TASKS} tasks submitted in {elapsed:.1f} s; HiDream throttled {simulator.throttled}"
        f", most in flight {in_flight['max']} (seen by HiDream {simulator.max_concurrency_seen})"
    )


# --- book_submission -------------------------------------------------------------------------

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _new_tasks(count: int) -> list[ModelImageTask]:
    return [ModelImageTask.objects.create(mode="prompt", prompt="p") for _ in range(count)]


@pytest.fixture
def pacing(settings):
    settings.HIDREAM_MAX_IMAGES_PER_MINUTE = 10
    settings.HIDREAM_RATE_WINDOW = 60
    return timedelta(seconds=60)


def _spacing(pictures: int) -> timedelta:
    """The even spacing the pacer keeps after a booking of ``pictures`` (10 per 60 s)."""
    return timedelta(seconds=60 * pictures / 10 * limits.SPACING_MARGIN)


def test_book_submission_is_first_come_first_served(pacing):
    a, b, c, d = _new_tasks(4)
    at_a = limits.book_submission(a.pk, 4, now=T0)
    at_b = limits.book_submission(b.pk, 4, now=T0)
    at_c = limits.book_submission(c.pk, 4, now=T0)
    at_d = limits.book_submission(d.pk, 1, now=T0)
    assert at_a == T0  # nothing booked: right away
    # Evenly spaced, in the order asked, each after the previous one's share of the window.
    assert at_b == at_a + _spacing(4)
    assert at_c >= at_b + _spacing(4)
    assert at_d >= at_c, "a small task does not jump the queue"
    moments = [(at - T0).total_seconds() for at in (at_a, at_b, at_c, at_d)]
    counts = [4, 4, 4, 1]
    for start in moments:  # no 60 s window holds more than 10 pictures
        assert sum(n for m, n in zip(moments, counts, strict=True) if start <= m < start + 60) <= 10
    # Asking again gives the same booking, whenever it is asked.
    assert limits.book_submission(a.pk, 4, now=T0 + timedelta(seconds=5)) == T0
    assert HiDreamRateReservation.objects.count() == 4


def test_book_submission_gives_a_task_larger_than_the_limit_a_window_of_its_own(pacing):
    small, big, after = _new_tasks(3)
    assert limits.book_submission(small.pk, 1, now=T0) == T0
    big_at = limits.book_submission(big.pk, 15, now=T0)  # 15 > 10 pictures per window
    assert big_at == T0 + pacing  # alone in its window, never refused
    after_at = limits.book_submission(after.pk, 1, now=T0)
    assert after_at >= big_at + pacing  # nothing else in the big task's window
    lone = _new_tasks(1)[0]
    HiDreamRateReservation.objects.all().delete()
    assert limits.book_submission(lone.pk, 40, now=T0) == T0  # nothing booked: right away


def test_book_submission_spreads_bookings_over_windows(pacing):
    tasks = _new_tasks(25)
    booked = [limits.book_submission(task.pk, 1, now=T0) for task in tasks]
    # One picture every window/limit (a hair more), never a burst at one instant.
    assert booked == [T0 + n * _spacing(1) for n in range(25)]
    moments = [(at - T0).total_seconds() for at in booked]
    assert _max_in_window(moments, 60) == 10  # the limit, reached but never passed


def test_book_submission_frees_the_room_of_a_released_booking(pacing):
    first, second = _new_tasks(2)
    assert limits.book_submission(first.pk, 10, now=T0) == T0
    limits.release_booking(first.pk)  # the submit never reached HiDream
    assert limits.book_submission(second.pk, 10, now=T0) == T0


def test_book_submission_without_a_limit_is_now_and_books_nothing(settings):
    settings.HIDREAM_MAX_IMAGES_PER_MINUTE = 0
    (task,) = _new_tasks(1)
    assert limits.book_submission(task.pk, 4, now=T0) == T0
    assert not HiDreamRateReservation.objects.exists()


def test_book_submission_forgets_bookings_older_than_the_window(pacing):
    old, new = _new_tasks(2)
    assert limits.book_submission(old.pk, 10, now=T0) == T0
    later = T0 + pacing + timedelta(seconds=1)
    assert limits.book_submission(new.pk, 10, now=later) == later
    assert list(HiDreamRateReservation.objects.values_list("task_id", flat=True)) == [new.pk]


# --- request_slot ----------------------------------------------------------------------------


def test_request_slot_gives_n_slots_and_the_next_caller_false(settings):
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = 3
    with ExitStack() as stack:
        got = [stack.enter_context(limits.request_slot()) for _ in range(3)]
        assert got == [True, True, True]
        assert HiDreamRequestSlot.objects.exclude(holder="").count() == 3
        with limits.request_slot() as fourth:
            assert fourth is False
    assert HiDreamRequestSlot.objects.exclude(holder="").count() == 0  # all given back
    with limits.request_slot() as again:
        assert again is True


def test_request_slot_takes_over_an_expired_lease(settings):
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = 1
    with limits.request_slot() as got:  # creates the slot row
        assert got
    past = T0.replace(year=2000)
    HiDreamRequestSlot.objects.update(holder="dead-worker", leased_until=past)
    with limits.request_slot() as got:
        assert got is True
        slot = HiDreamRequestSlot.objects.get()
        assert slot.holder not in ("", "dead-worker") and slot.leased_until > past


def test_request_slot_respects_a_lease_that_has_not_expired(settings):
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = 1
    with limits.request_slot():
        pass
    future = T0.replace(year=2100)
    HiDreamRequestSlot.objects.update(holder="busy-worker", leased_until=future)
    with limits.request_slot() as got:
        assert got is False
    assert HiDreamRequestSlot.objects.get().holder == "busy-worker"


def test_request_slot_expired_holder_cannot_free_the_new_holders_slot(settings):
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = 1
    slow = limits.request_slot()
    assert slow.__enter__() is True
    HiDreamRequestSlot.objects.update(leased_until=T0.replace(year=2000))  # its lease ran out
    newcomer = limits.request_slot()
    assert newcomer.__enter__() is True
    slow.__exit__(None, None, None)  # the slow worker finally finishes
    with limits.request_slot() as third:
        assert third is False  # the newcomer still holds the slot
    newcomer.__exit__(None, None, None)
    with limits.request_slot() as fourth:
        assert fourth is True


def test_request_slot_without_a_limit_is_always_free(settings):
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = 0
    with ExitStack() as stack:
        assert all(stack.enter_context(limits.request_slot()) for _ in range(20))
    assert not HiDreamRequestSlot.objects.exists()


def test_request_slot_recreates_slot_rows_that_disappeared(settings):
    """The slot rows can vanish under a running process (a flush between transactional
    tests, a restored backup, someone cleaning tables): the limit must still work, not
    refuse every caller forever."""
    settings.HIDREAM_MAX_CONCURRENT_REQUESTS = 2
    with limits.request_slot() as got:  # the process now "knows" the 2 slots exist
        assert got
    HiDreamRequestSlot.objects.all().delete()
    with limits.request_slot() as got:
        assert got is True, "no slot row left, and request_slot never makes them again"
