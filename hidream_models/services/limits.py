"""HiDream's plan limits, shared by every worker through the database.

HiDream caps concurrent requests (1–10 by plan) and pictures per minute, and throttles beyond
them (API-REFERENCE §6). Two mechanisms keep the shop inside both, whatever runs the jobs
(one db_worker, several, or Celery on several machines):

- **Pacing** (``HIDREAM_MAX_IMAGES_PER_MINUTE``): before a submit, the task books the earliest
  moment at which its pictures fit in the sliding window (``book_submission``). If that moment
  is in the future the job is re-enqueued for then; a bulk run of a thousand products is
  spread out, never failed.
- **Concurrency** (``HIDREAM_MAX_CONCURRENT_REQUESTS``): each API call holds one of N leased
  slot rows (``request_slot``), taken with a single conditional UPDATE, so no transaction
  stays open during the HTTP call. A lease expires by itself if its worker dies. Every
  request takes one: a submit through ``request_slot`` (it defers when all are busy), a poll
  or a template page through the client's gate, ``held_request_slot`` (it waits a while).
"""

from __future__ import annotations

import random
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from ..conf import hidream_settings
from ..exceptions import HiDreamBusyError
from ..models import HiDreamRateReservation, HiDreamRequestSlot

_known_slots = 0  # slots this process has made sure exist


def _window() -> timedelta:
    return timedelta(seconds=hidream_settings.RATE_WINDOW)


def book_submission(task_id, pictures: int, now: datetime | None = None) -> datetime:
    """Book (or return the existing booking of) the moment this task may be submitted.

    Bookings are first come, first served: each is the earliest moment, not before ``now``
    nor before any earlier booking, at which the pictures of the window ending then plus these
    stay within the limit. A task asking for more than the limit gets a window of its own.
    """
    explicit_now = now
    now = now or timezone.now()
    limit = hidream_settings.MAX_IMAGES_PER_MINUTE
    existing = HiDreamRateReservation.objects.filter(task_id=task_id).first()
    if existing is not None:
        return existing.send_at
    if not limit:
        return now
    window = _window()
    with transaction.atomic():
        # One booking at a time, across workers, under one lock taken first: locking the
        # booking rows themselves deadlocked, as workers reached overlapping rows in
        # different orders. (SQLite serialises whole write transactions anyway.)
        _lock_bookings()
        now = explicit_now or timezone.now()  # the time after waiting for the lock
        HiDreamRateReservation.objects.filter(send_at__lt=now - window).delete()
        booked = list(
            HiDreamRateReservation.objects.filter(send_at__gt=now - window)
            .order_by("send_at")
            .values_list("send_at", "pictures")
        )
        send_at = _earliest_fit(booked, pictures, limit, window, now)
        HiDreamRateReservation.objects.create(task_id=task_id, send_at=send_at, pictures=pictures)
    return send_at


# A hair more than the exact spacing, so clocks and jitter never add up to one too many.
SPACING_MARGIN = 1.05


def _earliest_fit(booked, pictures, limit, window, now) -> datetime:
    """The earliest ``t``, not before any existing booking (first come, first served), at
    which the bookings in ``(t - window, t]`` leave room for ``pictures``.

    ``booked`` is sorted by time. A booking at ``b`` counts for ``b ≤ t < b + window``.

    Bookings are also spaced evenly, ``window / limit`` per picture after the previous one:
    a burst of a whole window's pictures at one instant would queue behind the concurrency
    slots, and sends trailing their bookings would spill into HiDream's next window.
    """
    t = now
    if booked:
        last_at, last_count = booked[-1]
        spacing = window * (last_count / limit) * SPACING_MARGIN
        t = max(now, last_at + spacing)
    first = 0  # index of the oldest booking still inside the window ending at t
    used = sum(count for _at, count in booked)
    while True:
        while first < len(booked) and booked[first][0] + window <= t:
            used -= booked[first][1]
            first += 1
        if used + pictures <= limit or used == 0:
            return t
        t = booked[first][0] + window  # the moment the oldest one leaves the window


# Any fixed number: the advisory lock that serialises bookings on PostgreSQL.
BOOKING_LOCK_KEY = 0x48694472  # "HiDr"


def _lock_bookings() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [BOOKING_LOCK_KEY])
    else:
        # Elsewhere, a row lock on the first slot row does the same (no-op on SQLite).
        _ensure_slots(1)
        list(HiDreamRequestSlot.objects.select_for_update().filter(number=1))


def release_booking(task_id) -> None:
    """Give a booking back (the submission did not reach HiDream, or was refused)."""
    HiDreamRateReservation.objects.filter(task_id=task_id).delete()


def _ensure_slots(count: int) -> None:
    global _known_slots
    if _known_slots >= count:
        return
    HiDreamRequestSlot.objects.bulk_create(
        [HiDreamRequestSlot(number=n) for n in range(1, count + 1)], ignore_conflicts=True
    )
    _known_slots = count


def lease_seconds() -> float:
    # Long enough for the slowest call with its in-process retries; then it frees itself.
    return (hidream_settings.CONNECT_TIMEOUT + hidream_settings.READ_TIMEOUT) * 3 + 10


def _take_slot(limit: int, holder: str, now: datetime) -> int | None:
    """Lease a free (or expired) slot with one conditional UPDATE; its number, or None."""
    numbers = list(range(1, limit + 1))
    random.shuffle(numbers)  # spread workers over the slots instead of all racing for #1
    for number in numbers:
        updated = HiDreamRequestSlot.objects.filter(
            Q(leased_until__isnull=True) | Q(leased_until__lt=now), number=number
        ).update(holder=holder, leased_until=now + timedelta(seconds=lease_seconds()))
        if updated:
            return number
    return None


@contextmanager
def request_slot():
    """Hold one of the concurrent-request slots while the block runs.

    Yields True when a slot was taken (or there is no limit), False when all are busy: the
    caller should try later rather than wait, so a worker never sits idle holding a job.
    """
    limit = hidream_settings.MAX_CONCURRENT_REQUESTS
    if not limit:
        yield True
        return
    _ensure_slots(limit)
    holder = uuid.uuid4().hex
    now = timezone.now()
    taken = _take_slot(limit, holder, now)
    if taken is None and HiDreamRequestSlot.objects.filter(number__lte=limit).count() < limit:
        # The rows went away (a restored backup, a flushed test database): make them again.
        global _known_slots
        _known_slots = 0
        _ensure_slots(limit)
        taken = _take_slot(limit, holder, now)
    try:
        yield taken is not None
    finally:
        if taken is not None:
            HiDreamRequestSlot.objects.filter(number=taken, holder=holder).update(
                holder="", leased_until=None
            )


#: How long a poll or a template page waits for a free slot before giving up for now.
SLOT_WAIT_SECONDS = 30.0


@contextmanager
def held_request_slot(wait: float | None = None):
    """Hold a concurrent-request slot while the block runs, waiting up to ``wait`` s (by
    default ``SLOT_WAIT_SECONDS``) for one.

    Raises ``HiDreamBusyError`` (nothing was sent) when none came free in time.
    """
    if wait is None:
        wait = SLOT_WAIT_SECONDS
    deadline = time.monotonic() + wait
    while True:
        with request_slot() as got:
            if got:
                yield
                return
        if time.monotonic() >= deadline:
            raise HiDreamBusyError(
                _(
                    "All %(n)s concurrent HiDream requests (HIDREAM_MAX_CONCURRENT_REQUESTS) "
                    "stayed in use for %(s)s s; not sent, it will be tried again."
                )
                % {"n": hidream_settings.MAX_CONCURRENT_REQUESTS, "s": round(wait)}
            )
        time.sleep(random.uniform(0.05, 0.25))
