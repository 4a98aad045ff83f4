"""Goal 5: peak memory of preparing a big photo and of downloading big results.

Each case runs in a child process of its own (``python -m benchmarks.memory CASE ...``),
which sets Django up, does the same work once on something small (imports, first-use
allocations), collects garbage, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``)
and reads ``VmRSS``, runs the case, and reads the peak (``VmHWM``; ``ru_maxrss`` where
``/proc`` is not there). Growth = peak − RSS before.

- Prepare and submit: a 6000×4000 JPEG (noise over gradients, quality 90, so it does not
  compress to nothing) is the product photo of a one-picture task; ``submit_task`` reads
  it, fits it to 4096 px, base64-encodes it and POSTs it to the simulator (in the parent
  process). Baseline: the length of the base64 payload sent. Goal: growth ≤ 4× baseline.
- Download: 4 result pictures of 15 MB each (the simulator's ``oversize`` fault: a real
  JPEG padded to 15 MB), copied by ``download_result`` one after the other, as one worker
  runs its jobs, with ``HIDREAM_MAX_DOWNLOAD_BYTES`` at 32 MB (the warm-up downloads a
  normal result; the fault is switched on after it). Baseline: 64 MB. Goal:
  growth ≤ 64 MB.
"""

from __future__ import annotations

import gc
import io
import json
import resource
import subprocess
import sys
import time

from .common import (
    PYTHON,
    log,
    make_products,
    make_tasks,
    reset_data,
    row,
    store_file,
    wait_until,
)

MB = 2**20
BIG_SIZE = (6000, 4000)
RESULT_BYTES = 15 * MB
RESULTS = 4


def big_jpeg(size=BIG_SIZE) -> bytes:
    """A photo-like JPEG: colour gradients with Gaussian noise, quality 90."""
    from PIL import Image, ImageChops, ImageFilter

    width, height = size
    channels = []
    for n, angle in enumerate((0, 60, 120)):
        gradient = Image.linear_gradient("L").rotate(angle, expand=False)
        gradient = gradient.resize(size, Image.Resampling.BILINEAR)
        noise = Image.effect_noise(size, 28 + 6 * n).filter(ImageFilter.GaussianBlur(0.6))
        channels.append(ImageChops.add(ImageChops.multiply(gradient, noise), noise, 2.0, 0))
    out = io.BytesIO()
    Image.merge("RGB", channels).save(out, "JPEG", quality=90)
    return out.getvalue()


# -- the child side ------------------------------------------------------------------------


def _rss_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_kib() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _measure(work) -> dict:
    gc.collect()
    reset = _reset_peak()
    before = _rss_kib() if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - started
    peak = _peak_kib()
    return {
        "before_kib": before,
        "peak_kib": peak,
        "growth_bytes": max(0, peak - before) * 1024,
        "seconds": elapsed,
        "result": result,
        "method": "VmHWM after clear_refs" if reset else "ru_maxrss",
    }


def child(argv: list[str]) -> dict:
    import django

    django.setup()
    from hidream_models.images import prepare_source
    from hidream_models.models import GeneratedImage, ModelImageTask
    from hidream_models.services import download_result, submit_task

    case, warm, *ids = argv
    if case == "source":
        big = ids[0]
        if submit_task(warm) != "submitted":
            raise RuntimeError("the warm-up submit failed")
        measured = _measure(lambda: submit_task(big))
        if measured["result"] != "submitted":
            raise RuntimeError(f"the measured submit ended {measured['result']}")
        task = ModelImageTask.objects.get(pk=big)
        measured["payload_bytes"] = len(prepare_source(task.source_image.name).value)
        return measured
    if case == "download":
        if download_result(int(warm)) != "stored":
            raise RuntimeError("the warm-up download failed")
        print("ready", flush=True)  # the parent now makes the results big
        sys.stdin.readline()
        measured = _measure(lambda: [download_result(int(pk)) for pk in ids])
        if measured["result"] != ["stored"] * len(ids):
            raise RuntimeError(f"the measured downloads ended {measured['result']}")
        measured["stored_bytes"] = list(
            GeneratedImage.objects.filter(pk__in=ids).values_list("bytes", flat=True)
        )
        return measured
    raise SystemExit(f"unknown case {case!r}")


# -- the parent side -----------------------------------------------------------------------


def _run_child(bench, *args: str, on_ready=None, **env: str) -> dict:
    """Run a memory child; ``on_ready()`` runs when it says "ready" (after its warm-up)."""
    proc = subprocess.Popen(
        [PYTHON, "-m", "benchmarks.memory", *args],
        env=bench.child_env(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if on_ready is not None:
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.kill()
                _out, err = proc.communicate(timeout=30)
                raise RuntimeError(f"memory child {args[0]} failed:\n{err[-3000:]}")
            on_ready()
        out, err = proc.communicate("go\n", timeout=300)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {args[0]} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _downloading_pictures(bench, count: int) -> list[int]:
    """Submit a task of ``count`` pictures, wait for the simulator to finish it, apply its
    result: the pictures are then "downloading", with the simulator's result URLs."""
    from hidream_models.models import GeneratedImage, ImageStatus, ModelImageTask
    from hidream_models.payloads import parse_task_result
    from hidream_models.services import apply_result, submit_task

    task = make_tasks(make_products(1, prefix=f"D{count}"), image_count=count)[0]
    if submit_task(task.pk) != "submitted":
        raise RuntimeError("could not submit the download task")
    task = ModelImageTask.objects.get(pk=task.pk)

    def finished():
        reply = bench.sim.results(task.remote_task_id)["result"]
        done = all(item["task_status"] == 1 for item in reply["sub_task_results"])
        return reply if done else None

    reply = wait_until(finished, 30, what="the simulator to finish")
    apply_result(task.pk, parse_task_result(reply), source="poll")
    ids = list(
        GeneratedImage.objects.filter(task=task, status=ImageStatus.DOWNLOADING)
        .order_by("position")
        .values_list("pk", flat=True)
    )
    if len(ids) != count:
        raise RuntimeError(f"{len(ids)} pictures to download, not {count}")
    return ids


def run(bench) -> list[dict]:
    reset_data()
    sim = bench.sim
    sim.reset()
    sim.delay = 0.1

    # Case 1: prepare and submit a 6000×4000 JPEG.
    started = time.perf_counter()
    photo = big_jpeg()
    log(
        f"5. made a {BIG_SIZE[0]}×{BIG_SIZE[1]} JPEG of {len(photo) / MB:.1f} MB "
        f"in {time.perf_counter() - started:.1f} s"
    )
    big_name = store_file("products/bench-big.jpg", photo)
    del photo
    small, big = make_products(2, prefix="M")
    type(big).objects.filter(pk=big.pk).update(image=big_name)
    big.image.name = big_name
    warm_task, big_task = make_tasks([small, big], image_count=1)
    source = _run_child(bench, "source", str(warm_task.pk), str(big_task.pk))
    payload = source["payload_bytes"]
    growth = source["growth_bytes"]
    log(
        f"5. prepare+submit: RSS {source['before_kib'] / 1024:.0f} → peak "
        f"{source['peak_kib'] / 1024:.0f} MiB, growth {growth / MB:.1f} MiB for a payload of "
        f"{payload / MB:.1f} MiB ({growth / payload:.1f}×) in {source['seconds']:.2f} s "
        f"[{source['method']}]"
    )

    # Case 2: download 4 results of 15 MB (after one small warm-up download).
    warm_id = _downloading_pictures(bench, 1)[0]
    ids = _downloading_pictures(bench, RESULTS)
    try:
        downloads = _run_child(
            bench,
            "download",
            str(warm_id),
            *map(str, ids),
            on_ready=lambda: sim.set_faults(result_fault="oversize", oversize_bytes=RESULT_BYTES),
            HIDREAM_MAX_DOWNLOAD_BYTES=str(32 * MB),
        )
    finally:
        sim.reset()
        sim.delay = 0.3
    if any(size < RESULT_BYTES for size in downloads["stored_bytes"]):
        raise RuntimeError(f"results smaller than {RESULT_BYTES}: {downloads['stored_bytes']}")
    budget = 64 * MB
    log(
        f"5. download {RESULTS} × {RESULT_BYTES / MB:.0f} MB: RSS "
        f"{downloads['before_kib'] / 1024:.0f} → peak {downloads['peak_kib'] / 1024:.0f} MiB, "
        f"growth {downloads['growth_bytes'] / MB:.1f} MiB in {downloads['seconds']:.2f} s"
    )
    reset_data()
    return [
        row(
            "5. Memory: prepare and submit a 6000×4000 JPEG, peak RSS growth "
            "(baseline: the base64 payload)",
            growth / MB,
            payload / MB,
            "MiB",
            "ratio ≤ 4",
            growth <= 4 * payload,
        ),
        row(
            "5. Memory: download 4 results of 15 MB, peak RSS growth (baseline: 64 MB)",
            downloads["growth_bytes"] / MB,
            budget / MB,
            "MiB",
            "ratio ≤ 1",
            downloads["growth_bytes"] <= budget,
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1:])))
