"""Goal 7 (scale-out): throughput of 2 Celery workers against 1, when HiDream's latency bounds it.

The same app code runs its jobs on Celery (``TASKS_BACKEND=celery``, django-tasks-celery, Redis
broker at ``redis://127.0.0.1:6379/8``, flushed before each run). Each worker runs one job at
a time (``--pool solo``), and HiDream (the simulator) takes ``LATENCY`` seconds to answer a
submit, so a worker's throughput is bound by that latency, not by CPU. ``TASKS`` one-picture
tasks are created at once; the time is from their creation to the last ``submitted``. The
app's plan limits are off so only the workers bound the rate. Baseline: the same run on one
worker. Goal: ratio ≥ 1.7.
"""

from __future__ import annotations

import sys
import time

from .common import Processes, log, make_products, reset_data, row, wait_until

TASKS = 40
LATENCY = 0.5
BROKER = "redis://127.0.0.1:6379/8"
CELERY_TASKS = {
    "default": {
        "BACKEND": "django_tasks_celery.CeleryBackend",
        "OPTIONS": {"CELERY_APP": "shop_demo.celery.app"},
    }
}


def _run_with(bench, workers: int) -> float:
    import redis
    from django.test import override_settings

    from hidream_models.models import ModelImageTask, TaskStatus
    from hidream_models.services import GenerationOptions, create_tasks_for_products

    reset_data()
    redis.Redis.from_url(BROKER).flushdb()
    env = bench.child_env(
        TASKS_BACKEND="celery",
        CELERY_BROKER_URL=BROKER,
        HIDREAM_MAX_CONCURRENT_REQUESTS="0",
        HIDREAM_MAX_IMAGES_PER_MINUTE="0",
    )
    products = make_products(TASKS, prefix=f"C{workers}")
    options = GenerationOptions.validated({"prompt": "studio portrait", "image_count": 1})
    with (
        Processes(bench) as procs,
        override_settings(TASKS=CELERY_TASKS, CELERY_BROKER_URL=BROKER),
    ):
        for n in range(workers):
            procs.start(
                f"celery{workers}-{n}",
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "shop_demo",
                    "worker",
                    "--pool",
                    "solo",
                    "-n",
                    f"bench{workers}-{n}@%h",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env,
            )
        time.sleep(4)  # the workers import Django and connect to the broker
        started = time.monotonic()
        create_tasks_for_products(products, options)

        def all_submitted():
            return (
                ModelImageTask.objects.filter(status=TaskStatus.SUBMITTED).count() >= TASKS
            )

        wait_until(all_submitted, 120, interval=0.1, what=f"{TASKS} submits on {workers} workers")
        elapsed = time.monotonic() - started
    reset_data()
    return TASKS / elapsed


def run(bench) -> list[dict]:
    sim = bench.sim
    sim.reset()
    sim.send_callbacks = False
    sim.delay = 3600.0  # only submits are measured
    sim.set_faults(latency=LATENCY)
    try:
        one = _run_with(bench, 1)
        two = _run_with(bench, 2)
    finally:
        sim.reset()
        sim.delay = 0.3
        sim.send_callbacks = True
    log(f"7. {one:.2f} tasks/s on 1 Celery worker, {two:.2f} on 2 ({two / one:.2f}x)")
    return [
        row(
            f"7. Scale-out: submits per second on 2 Celery workers, {LATENCY:g} s HiDream "
            "latency (baseline: 1 worker)",
            two,
            one,
            "tasks/s",
            "ratio ≥ 1.7",
            two >= 1.7 * one,
        )
    ]
