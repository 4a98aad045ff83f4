"""Goal 4: from a callback's arrival to the 4 files in storage, with idle workers.

gunicorn (2 workers) serves the app on a loopback port, ``HIDREAM_CALLBACK_BASE_URL``
points at it, and 2 idle ``manage.py db_worker`` processes (``--interval 0.05``) wait for
jobs. 100 tasks of 4 pictures are submitted one at a time to the simulator (``submit_task``
called directly, no queue, so the workers only apply callbacks and download), each once the
previous one has its 4 files and a pause of 0.05 s has passed, so every callback finds the
workers idle; the simulator finishes each task 0.1 s after its submit and calls back (the
callback view stores it; a worker applies it, a batch window later, and queues the 4
downloads). The result files are a real 768×1024 JPEG (``benchmarks.simulator``: drawn
once, served like from a CDN).

Per task: from ``CallbackEvent.received_at`` (the callback's arrival, written by the view)
to the last ``GeneratedImage.stored_at`` of its 4 pictures (written by the workers). The
figure is the 95th percentile over the 100 tasks. Goal: < 1 s.

Baseline: the same 4 downloads done directly, without the queue: ``download_result`` for
the 4 pictures of a task in 2 threads (the parallelism of the 2 workers), for 30 tasks put
back to "downloading"; its 95th percentile.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from .common import (
    Processes,
    log,
    make_products,
    make_tasks,
    percentile,
    reset_data,
    row,
    wait_until,
)

TASKS = 100
PICTURES = 4
PAUSE = 0.05
SIM_DELAY = 0.1
BASELINE_TASKS = 30
GOAL_MS = 1000.0


def _direct_downloads(task) -> float:
    """Put a task's pictures back to "downloading" and copy them without the queue."""
    from django.db import connection

    from hidream_models.models import GeneratedImage, ImageStatus
    from hidream_models.services import download_result

    ids = list(task.images.values_list("pk", flat=True))
    GeneratedImage.objects.filter(pk__in=ids).update(
        status=ImageStatus.DOWNLOADING, stored_at=None, file=""
    )

    def one(image_id):
        try:
            return download_result(image_id)
        finally:
            connection.close()  # this thread's connection

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = list(pool.map(one, ids))
    elapsed = time.perf_counter() - started
    if statuses != [ImageStatus.STORED] * len(ids):
        raise RuntimeError(f"direct downloads ended {statuses}")
    return elapsed


def _stages(arrivals: dict) -> str:
    """Where the time goes, from the download jobs' own timestamps: callback arrival →
    job enqueued → job started → job finished (p50/p95 over all jobs)."""
    from django_tasks_db.models import DBTaskResult

    from hidream_models.models import GeneratedImage

    task_of = dict(GeneratedImage.objects.values_list("pk", "task_id"))
    spans: dict[str, list[float]] = {"enqueue": [], "queue": [], "run": []}
    for job in DBTaskResult.objects.filter(task_path__endswith="download_generated_image"):
        arrived = arrivals.get(task_of.get(job.args_kwargs["args"][0]))
        if arrived is None or job.started_at is None or job.finished_at is None:
            continue
        spans["enqueue"].append((job.enqueued_at - arrived).total_seconds())
        spans["queue"].append((job.started_at - job.enqueued_at).total_seconds())
        spans["run"].append((job.finished_at - job.started_at).total_seconds())
    return ", ".join(
        f"{name} {1000 * percentile(v, 50):.0f}/{1000 * percentile(v, 95):.0f}"
        for name, v in spans.items()
        if v
    )


def run(bench) -> list[dict]:
    from django.db.models import Max, Min
    from django.test import override_settings

    from hidream_models.models import (
        CallbackEvent,
        GeneratedImage,
        ImageStatus,
        ModelImageTask,
    )
    from hidream_models.services import submit_task

    reset_data()
    sim = bench.sim
    sim.reset()
    sim.delay = SIM_DELAY
    products = make_products(TASKS, prefix="F")
    tasks = make_tasks(products, image_count=PICTURES)

    with Processes(bench) as procs:
        _proc, port = procs.gunicorn(bench.child_env(), workers=2)
        callback_base = f"http://127.0.0.1:{port}"
        env = bench.child_env(HIDREAM_CALLBACK_BASE_URL=callback_base)
        procs.db_workers(env, 2, interval=0.05)
        time.sleep(3)  # the workers import Django and start polling
        with override_settings(HIDREAM_CALLBACK_BASE_URL=callback_base):
            errors: list[str] = []

            def submit(task_id) -> None:
                try:
                    status = submit_task(task_id)
                    if status not in ("submitted", "processing", "succeeded"):
                        errors.append(f"{task_id}: {status}")
                except Exception as exc:  # reported below
                    errors.append(f"{task_id}: {exc!r}")

            for task in tasks:  # one at a time, so each callback finds the workers idle
                submit(task.pk)
                if errors:
                    raise RuntimeError(f"submits failed: {errors[:3]}")

                def done(task_id=task.pk):
                    return (
                        not GeneratedImage.objects.filter(task_id=task_id)
                        .exclude(status__in=(ImageStatus.STORED, ImageStatus.FAILED))
                        .exists()
                        and GeneratedImage.objects.filter(task_id=task_id).exists()
                    )

                wait_until(done, 30, interval=0.01, what=f"the files of task {task.pk}")
                time.sleep(PAUSE)

            def all_final():
                pending = GeneratedImage.objects.exclude(
                    status__in=(ImageStatus.STORED, ImageStatus.FAILED)
                ).count()
                total = GeneratedImage.objects.count()
                return total == TASKS * PICTURES and pending == 0

            wait_until(all_final, 60, interval=0.2, what="all pictures stored")

    failed = GeneratedImage.objects.filter(status=ImageStatus.FAILED).count()
    arrivals = dict(
        CallbackEvent.objects.values("task_id")
        .annotate(first=Min("received_at"))
        .values_list("task_id", "first")
    )
    stored = dict(
        GeneratedImage.objects.values("task_id")
        .annotate(last=Max("stored_at"))
        .values_list("task_id", "last")
    )
    latencies = [
        (stored[task.pk] - arrivals[task.pk]).total_seconds()
        for task in tasks
        if task.pk in arrivals and stored.get(task.pk)
    ]
    if len(latencies) != TASKS or failed:
        raise RuntimeError(f"{len(latencies)} tasks complete, {failed} pictures failed")

    stages = _stages(arrivals)
    # Baseline: the same downloads without the queue, for some of the tasks.
    baseline = [
        _direct_downloads(task)
        for task in ModelImageTask.objects.filter(pk__in=[t.pk for t in tasks[:BASELINE_TASKS]])
    ]
    p95, p95_base = 1000 * percentile(latencies, 95), 1000 * percentile(baseline, 95)
    log(
        f"4. callback → 4 files stored: p50 {1000 * percentile(latencies, 50):.0f} ms, "
        f"p95 {p95:.0f} ms, max {1000 * max(latencies):.0f} ms; direct downloads: "
        f"p50 {1000 * percentile(baseline, 50):.0f} ms, p95 {p95_base:.0f} ms; "
        f"stages (p50/p95 ms): {stages}"
    )
    sim.reset()
    reset_data()
    return [
        row(
            "4. Callback to stored files: p95 from callback arrival to 4 files stored, "
            "idle workers (baseline: the 4 downloads done directly, p95)",
            p95,
            p95_base,
            "ms",
            f"value < {GOAL_MS:g} ms",
            p95 < GOAL_MS,
        )
    ]
