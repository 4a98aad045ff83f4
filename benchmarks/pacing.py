"""Goal 3: paced submission of 300 tasks within HiDream's limits, by the app's own pacing.

The plan: 600 pictures a minute and 5 concurrent requests; HiDream (the simulator) answers
each submit after 200 ms and throttles (HTTP 429) beyond either limit
(``sim.throttle(images=60, window=6, concurrent=5)``).

The window is scaled by 1/10 with the same rate: 60 pictures per 6 s window
(``HIDREAM_MAX_IMAGES_PER_MINUTE=60``, ``HIDREAM_RATE_WINDOW=6``), i.e. 10 pictures a
second. With HiDream's real 60 s window all 300 pictures would fit in the first window and
pacing would never act; scaled, the 300 tasks span five windows, as 3,000 tasks would with
the real one. ``HIDREAM_MAX_CONCURRENT_REQUESTS=5``.

300 products with a photo get a one-picture task each through the app's service
(``create_tasks_for_products``: one bulk insert, one dispatch job); 6 ``manage.py
db_worker`` processes (``--interval 0.05``) run the jobs until every task is submitted.
The rate is the pictures submitted divided by the time from the first to the last send
(``request_sent_at``), against the configured limit (10 pictures/s = 600/min). A sliding
window allows a burst of one window's worth at the start, so a perfect pacer scores a
little above 1 on a run of five windows. Goals: ratio ≥ 0.9, no 429 and no failed task.
"""

from __future__ import annotations

import time
from collections import Counter

from .common import Processes, log, make_products, reset_data, row, wait_until

TASKS = 300
WINDOW = 6
LIMIT = 60  # pictures per WINDOW seconds: 600 per minute
CONCURRENT = 5
LATENCY = 0.2
WORKERS = 6
TIMEOUT = 150


def run(bench) -> list[dict]:
    from django.db.models import Max, Min
    from django.test import override_settings

    from hidream_models.models import ModelImageTask, TaskStatus
    from hidream_models.services import GenerationOptions, create_tasks_for_products

    reset_data()
    sim = bench.sim
    sim.reset()
    sim.send_callbacks = False
    sim.delay = 3600.0  # no task finishes during the run: only submits are measured
    sim.set_faults(latency=LATENCY)
    sim.throttle(images=LIMIT, window=WINDOW, concurrent=CONCURRENT)
    limits = {
        "HIDREAM_MAX_IMAGES_PER_MINUTE": LIMIT,
        "HIDREAM_RATE_WINDOW": WINDOW,
        "HIDREAM_MAX_CONCURRENT_REQUESTS": CONCURRENT,
        "HIDREAM_CALLBACK_BASE_URL": "",
    }
    products = make_products(TASKS, prefix="S")
    options = GenerationOptions.validated(
        {"template": {"human_template_id": "h-001", "scene_template_id": "s-001"}, "image_count": 1}
    )
    try:
        with Processes(bench) as procs, override_settings(**limits):
            procs.db_workers(bench.child_env(**limits), WORKERS, interval=0.05)
            time.sleep(3)  # the workers import Django and start polling
            report = create_tasks_for_products(products, options)
            started = time.monotonic()

            def all_sent():
                waiting = ModelImageTask.objects.filter(
                    status__in=(TaskStatus.QUEUED, TaskStatus.SUBMITTING)
                ).count()
                return waiting == 0

            wait_until(all_sent, TIMEOUT, interval=0.25, what="every task submitted")
            wall = time.monotonic() - started
            throttled, most_concurrent = sim.throttled, sim.max_concurrency_seen
            accepted = sim.accepted_submits
            reasons = Counter(name for name, _kind in sim.fault_events)
    finally:
        sim.reset()
        sim.delay = 0.3
        sim.send_callbacks = True

    tasks = ModelImageTask.objects.filter(pk__in=[task.pk for task in report.tasks])
    span = tasks.aggregate(first=Min("request_sent_at"), last=Max("request_sent_at"))
    counts = {s: tasks.filter(status=s).count() for s in (TaskStatus.SUBMITTED, TaskStatus.FAILED)}
    others = tasks.exclude(status__in=list(counts)).count()
    elapsed = (span["last"] - span["first"]).total_seconds()
    pictures = counts[TaskStatus.SUBMITTED]
    rate = 60 * pictures / elapsed if elapsed else 0.0  # pictures per minute
    limit_per_minute = 60 * LIMIT / WINDOW
    log(
        f"3. {pictures} submitted, {counts[TaskStatus.FAILED]} failed, {others} other; "
        f"first to last send {elapsed:.1f} s (wall {wall:.1f} s); {rate:.0f} pictures/min; "
        f"429s {throttled} {dict(reasons)}; accepted {accepted}; "
        f"most requests in flight {most_concurrent}"
    )
    reset_data()
    return [
        row(
            "3. Paced submission: rate, 300 tasks, 200 ms latency, 5 concurrent "
            "(baseline: the limit, 600/min as 60 per 6 s)",
            rate,
            limit_per_minute,
            "pictures/min",
            "ratio ≥ 0.9",
            rate >= 0.9 * limit_per_minute and pictures == TASKS,
        ),
        row(
            "3. Paced submission: throttled (429) replies and failed tasks "
            "(baseline: submits accepted)",
            throttled + counts[TaskStatus.FAILED],
            pictures,
            "replies + tasks",
            "value = 0",
            throttled == 0 and counts[TaskStatus.FAILED] == 0,
        ),
    ]
