"""The chaos run: start everything, create tasks while killing workers, settle, check.

Phases (each bounded in time):

1. **Set up**: a PostgreSQL database of its own (``hidream_chaos_<pid>``, dropped at the end
   unless ``--keep-db``), an emptied Redis database as the broker, one product picture per
   task, and the processes: the simulator with seeded chaos (``hidream_simulator --chaos``),
   gunicorn for the callbacks, ``hidream_sync --loop`` and two Celery workers (prefork, two
   pool children each). Each process logs to its own file in the run folder
   (``var/chaos/<time>-seed<seed>/``).
2. **Chaos**: the tasks (×2 pictures) are created through ``services`` at ``--rate`` a minute
   while a thread SIGKILLs a worker every 15–30 s (seeded): a pool child (Celery forks a new
   one) or the parent (its jobs come back after the broker's visibility timeout; a new worker
   is started). It ends once every task is created and none is queued or being submitted,
   after ``--min-chaos`` seconds at least and ``--chaos-tail`` seconds after the last task
   was created at most.
3. **Settle**: killing stops and the simulator's faults are switched off; the run waits until
   every task is final or ``unconfirmed``, no callback event is ``received``, the simulator
   has no task left to finish or call back for, and that has held for 15 s (at most
   ``--settle`` seconds).
4. **Check**: the simulator's ledger is fetched, everything is stopped, and ``invariants``
   compares the database and the storage with it. The figures are printed as a table and
   written with every violation to the run folder; the exit status is 1 on any violation.

Every process started is in its own process group, and all of them are killed on the way out
(normal end, failure, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "chaos-token"  # noqa: S105 - the simulator's token for this run, not a secret
PICTURES = 2
PREFIX = "hidream"  # HIDREAM_STORAGE_PREFIX's default, which the run keeps


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


class Proc:
    """A process of the run, in its own process group, logging to `log_path`."""

    def __init__(self, name, argv, env, log_path, *, pass_fds=(), stdout_pipe=False):
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(  # noqa: S603 - our interpreter and our argv
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            pass_fds=pass_fds,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.killed = False  # SIGKILLed by the chaos thread

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the whole group, then SIGKILL what is left (orphaned pool children too)."""
        self.signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        self.signal_group(signal.SIGKILL)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log(f"WARNING: {self.name} (pid {self.pid}) did not die")
        self._log.close()


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (Celery's pool processes), from /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return sorted(int(item) for item in text.split())
    except OSError:
        pass
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


class Run:
    """One chaos run; see the module doc."""

    def __init__(self, args):
        self.args = args
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.dir = Path(args.out or ROOT / "var" / "chaos" / f"{stamp}-seed{args.seed}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = f"hidream_chaos_{os.getpid()}_{args.seed}"
        self.media = self.dir / "media"
        self.procs: list[Proc] = []
        self.workers: list[Proc] = []
        self.worker_number = 0
        self.kills: list[dict] = []
        self.stop_chaos = threading.Event()
        self.lock = threading.Lock()
        self.env: dict[str, str] = {}
        self.times: dict[str, float] = {}
        self.db_created = False

    # --- processes ---------------------------------------------------------------------

    def start(self, name, argv, **kwargs) -> Proc:
        proc = Proc(name, argv, self.env, self.dir / f"{name}.log", **kwargs)
        with self.lock:
            self.procs.append(proc)
        return proc

    def start_worker(self) -> Proc:
        with self.lock:
            self.worker_number += 1
            number = self.worker_number
        worker = self.start(
            f"worker-{number}",
            [
                sys.executable, "-m", "celery", "-A", "shop_demo", "worker",
                "--pool", "prefork", "--concurrency", str(self.args.concurrency),
                "-n", f"chaos{number}@%h", "--loglevel", "WARNING",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
        )  # fmt: skip
        with self.lock:
            self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        with self.lock:
            procs = list(reversed(self.procs))
        for proc in procs:
            proc.stop()

    # --- set-up --------------------------------------------------------------------------

    def setup(self) -> None:
        import psycopg

        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db}",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:6379/{self.args.redis_db}",
            "MEDIA_ROOT": str(self.media),
            "HIDREAM_API_TOKEN": TOKEN,
            "PYTHONUNBUFFERED": "1",
        }
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{self.db}"')
        self.db_created = True
        import redis

        redis.Redis.from_url(self.env["CELERY_BROKER_URL"]).flushdb()

        simulator = self.start(
            "simulator",
            [
                sys.executable, "manage.py", "hidream_simulator", "--port", "0",
                "--token", TOKEN, "--delay", str(self.args.delay), "--chaos",
                "--chaos-seed", str(self.args.seed), "--report", str(self.dir / "ledger.json"),
                "--latency", str(self.args.latency),
                "--result-latency", str(self.args.latency),
            ],
            stdout_pipe=True,
        )  # fmt: skip
        line = simulator.popen.stdout.readline().decode()
        if "listening on " not in line:
            raise RuntimeError(f"the simulator did not start: {line!r}; see {simulator.log_path}")
        self.sim_url = line.split("listening on ")[1].strip()
        # Its stdout is hardly written to again; a thread drains it so it can never block.
        threading.Thread(target=simulator.popen.stdout.read, daemon=True).start()

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.web_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        self.env["HIDREAM_BASE_URL"] = self.sim_url
        self.env["HIDREAM_CALLBACK_BASE_URL"] = self.web_url
        os.environ.update(self.env)

        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.start(
            "web",
            [
                sys.executable, "-m", "gunicorn", "shop_demo.wsgi:application",
                "--bind", f"fd://{listener.fileno()}", "--worker-class", "gthread",
                "--workers", "1", "--threads", "8", "--timeout", "30", "--log-level", "warning",
            ],
            pass_fds=(listener.fileno(),),
        )  # fmt: skip
        listener.close()
        self.start(
            "sync", [sys.executable, "manage.py", "hidream_sync", "--loop", "--interval", "1"]
        )
        for _ in range(self.args.workers):
            self.start_worker()
        self.products = self.make_products()
        self._wait_for_web()

    def _wait_for_web(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(self.web_url + "/", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.3)
        raise RuntimeError(f"the web server did not answer; see {self.dir / 'web.log'}")

    def make_products(self) -> list:
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage
        from PIL import Image

        from shop_demo.catalog.models import Product

        rng = random.Random(self.args.seed)
        products = []
        for number in range(self.args.tasks):
            buffer = io.BytesIO()
            colour = tuple(rng.randrange(256) for _ in range(3))
            Image.new("RGB", (300, 400), colour).save(buffer, "JPEG", quality=85)
            name = default_storage.save(
                f"products/chaos-{number:05d}.jpg", ContentFile(buffer.getvalue())
            )
            products.append(
                Product(name=f"Chaos {number}", sku=f"CH-{number:05d}", price="10.00", image=name)
            )
        return Product.objects.bulk_create(products)

    # --- the chaos ----------------------------------------------------------------------

    def chaos(self) -> None:
        """SIGKILL a worker every 15–30 s (seeded): a pool child or the parent."""
        rng = random.Random(self.args.seed * 7919 + 1)
        while not self.stop_chaos.wait(rng.uniform(self.args.kill_min, self.args.kill_max)):
            with self.lock:
                alive = [worker for worker in self.workers if not worker.killed and worker.alive()]
            if not alive:
                continue
            worker = rng.choice(alive)
            kind = "child" if rng.random() < 0.5 else "parent"
            children = child_pids(worker.pid)
            if kind == "child" and children:
                pid = rng.choice(children)
            else:
                kind, pid = "parent", worker.pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills.append({"at": time.time(), "kind": kind, "pid": pid, "worker": worker.name})
            log(f"chaos: SIGKILL {worker.name} {kind} pid {pid}")
            if kind == "parent":
                worker.killed = True
                self.start_worker()  # its pool children are orphans now, left to finish

    # --- the run ------------------------------------------------------------------------

    def create_and_torment(self) -> None:
        from hidream_models import services
        from hidream_models.models import ModelImageTask, TaskStatus

        options = services.GenerationOptions.validated(
            {"prompt": "studio portrait, chaos run", "image_count": PICTURES}
        )
        chaos = threading.Thread(target=self.chaos, name="chaos", daemon=True)
        self.times["start"] = time.monotonic()
        chaos.start()
        per_batch = max(1, round(self.args.rate / 12))  # a batch every 5 s
        created, next_batch = 0, time.monotonic()
        deadline = time.monotonic() + self.args.tasks / self.args.rate * 60 + self.args.chaos_tail
        last_report = 0.0
        while time.monotonic() < deadline:
            if created < len(self.products) and time.monotonic() >= next_batch:
                batch = self.products[created : created + per_batch]
                services.create_tasks_for_products(batch, options)
                created += len(batch)
                next_batch += 5
            busy = ModelImageTask.objects.filter(
                status__in=[TaskStatus.QUEUED, TaskStatus.SUBMITTING]
            ).exists()
            chaos_for = time.monotonic() - self.times["start"]
            if created == len(self.products) and not busy and chaos_for >= self.args.min_chaos:
                break
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                log(f"chaos phase: {created} created; {self.status_line()}")
            time.sleep(1)
        else:
            log("chaos phase: time is up with tasks still queued or submitting")
        self.stop_chaos.set()
        chaos.join()
        self.times["chaos_end"] = time.monotonic()
        self.control_faults(
            server_error_rate=0, throttle_rate=0, drop_rate=0, callback_lost_rate=0,
            callback_duplicate_rate=0, callback_reorder_rate=0,
        )  # fmt: skip
        with self.lock:
            alive = [w for w in self.workers if not w.killed and w.alive()]
        for _ in range(self.args.workers - len(alive)):
            self.start_worker()
        log(f"chaos phase over after {len(self.kills)} kills; faults off; settling")

    def settle(self) -> bool:
        from hidream_models.models import CallbackEvent, ModelImageTask

        deadline = time.monotonic() + self.args.settle
        quiet_since, last_report = None, 0.0
        while time.monotonic() < deadline:
            unsettled = ModelImageTask.objects.exclude(
                status__in=["succeeded", "partial", "failed", "unconfirmed"]
            ).count()
            received = CallbackEvent.objects.filter(outcome="received").count()
            pending = self.report(ledger=False)["pending_tasks"]
            if unsettled == received == pending == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= 15:
                    self.times["settled"] = time.monotonic()
                    log(f"settled: {self.status_line()}")
                    return True
            else:
                quiet_since = None
            if time.monotonic() - last_report >= 15:
                last_report = time.monotonic()
                log(
                    f"settling: {self.status_line()}; callbacks received {received}; "
                    f"simulator tasks pending {pending}"
                )
            time.sleep(1)
        self.times["settled"] = time.monotonic()
        log(f"NOT settled within {self.args.settle:g} s: {self.status_line()}")
        return False

    def status_line(self) -> str:
        from django.db.models import Count

        from hidream_models.models import ModelImageTask

        counts = ModelImageTask.objects.values_list("status").annotate(n=Count("pk"))
        return ", ".join(f"{status} {n}" for status, n in sorted(counts))

    def report(self, *, ledger: bool = True) -> dict:
        answer = requests.get(
            self.sim_url + "/simulator/control/report" + ("" if ledger else "?ledger=0"),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()["result"]

    def control_faults(self, **changes) -> None:
        answer = requests.post(
            self.sim_url + "/simulator/control/faults",
            json=changes,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
        answer.raise_for_status()

    # --- the check ----------------------------------------------------------------------

    def collect(self, report: dict):
        from django.conf import settings

        from hidream_models.models import (
            CallbackEvent,
            GeneratedImage,
            HiDreamTemplate,
            ModelImageTask,
        )

        from .invariants import RunData

        def epoch(value):
            return value.timestamp() if value else None

        tasks = [
            {
                "id": str(task.pk),
                "status": task.status,
                "remote_task_id": task.remote_task_id,
                "sub_task_ids": list(task.sub_task_ids or []),
                "request_sent_at": epoch(task.request_sent_at),
                "updated_at": epoch(task.updated_at),
                "error_message": task.error_message,
                "attempts": task.attempts,
            }
            for task in ModelImageTask.objects.all()
        ]
        root = Path(settings.MEDIA_ROOT)
        files = {
            str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted((root / PREFIX).rglob("*"))
            if path.is_file()
        }
        images = [
            {
                "id": image.pk,
                "task_id": str(image.task_id),
                "sub_task_id": image.sub_task_id,
                "status": image.status,
                "file": image.file.name,
                "sha256": files.get(image.file.name) if image.file.name else None,
            }
            for image in GeneratedImage.objects.all()
        ]
        referenced = {image["file"] for image in images if image["file"]}
        for source, mask in ModelImageTask.objects.values_list("source_image", "mask"):
            referenced.update(name for name in (source, mask) if name)
        referenced.update(
            name for name in HiDreamTemplate.objects.values_list("preview", flat=True) if name
        )
        events = [
            {"id": pk, "task_id": str(task_id), "outcome": outcome, "error": error}
            for pk, task_id, outcome, error in CallbackEvent.objects.values_list(
                "pk", "task_id", "outcome", "error"
            )
        ]
        return RunData(
            tasks=tasks,
            images=images,
            files=files,
            referenced=referenced,
            events=events,
            ledger=report["ledger"],
            refused=report["refused"],
            kills=self.kills,
            chaos_counts=report["chaos_counts"],
            connect_timeout=settings.HIDREAM_CONNECT_TIMEOUT,
            read_timeout=settings.HIDREAM_READ_TIMEOUT,
        )

    def cleanup(self) -> None:
        """Stop every process, drop the database and empty the broker, whatever happened."""
        log("cleaning up: stopping every process of the run")
        self.stop_chaos.set()
        self.stop_all()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001, S110 - Django may never have been set up
            pass
        try:
            if self.db_created and not self.args.keep_db:
                import psycopg

                url = "postgresql://postgres@127.0.0.1:5432/postgres"
                with psycopg.connect(url, autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            elif self.db_created:
                log(f"kept the database {self.db}")
            if self.env:
                import redis

                redis.Redis.from_url(self.env["CELERY_BROKER_URL"]).flushdb()
        except Exception as exc:  # noqa: BLE001 - report it, but never hide the run's own error
            log(f"WARNING: cleaning up failed: {exc}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("--tasks", type=int, default=200, help="tasks to create, 2 pictures each (default 200)")
    add("--seed", type=int, default=14, help="seed of the faults and the kills (default 14)")
    add("--rate", type=float, default=50.0, help="tasks created per minute (default 50)")
    add("--workers", type=int, default=2, help="Celery workers (default 2)")
    add("--concurrency", type=int, default=2, help="pool children per worker (default 2)")
    add("--kill-min", type=float, default=15.0, help="shortest pause between kills, s (default 15)")
    add("--kill-max", type=float, default=30.0, help="longest pause between kills, s (default 30)")
    add("--delay", type=float, default=1.0, help="seconds the simulator takes per task (default 1)")
    add(
        "--latency",
        type=float,
        default=0.3,
        help="seconds the simulator adds to each API request and picture (default 0.3): "
        "work in flight is what a kill interrupts",
    )
    add("--min-chaos", type=float, default=60.0, help="least seconds of chaos (default 60)")
    add(
        "--chaos-tail",
        type=float,
        default=120.0,
        help="most seconds of chaos after the last task is created (default 120)",
    )
    add(
        "--settle",
        type=float,
        default=None,
        help="most seconds to settle (default 0.6 per task, at least 180)",
    )
    add("--redis-db", type=int, default=9, help="Redis database of the broker (default 9)")
    add("--out", default=None, help="folder for logs and results (default var/chaos/...)")
    add("--keep-db", action="store_true", help="keep the database afterwards, to look into it")
    args = parser.parse_args(argv)
    if args.settle is None:
        args.settle = max(180.0, args.tasks * 0.6)

    run = Run(args)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log(f"chaos run: {args.tasks} tasks x {PICTURES}, seed {args.seed}; logs in {run.dir}")
    try:
        run.setup()
        log(
            f"simulator {run.sim_url}, web {run.web_url}, database {run.db}, "
            f"{args.workers} workers x {args.concurrency}"
        )
        run.create_and_torment()
        settled = run.settle()
        report = run.report()
        run.stop_all()  # nothing may change under the checks
        (run.dir / "ledger.json").write_text(json.dumps(report, indent=1))
        from .invariants import check, table

        data = run.collect(report)
        outcome = check(data)
        started = run.times["start"]
        outcome.figures["run time"] = (
            f"{run.times['settled'] - started:.0f} s (chaos {run.times['chaos_end'] - started:.0f}"
            f" s, settling {run.times['settled'] - run.times['chaos_end']:.0f} s)"
        )
        for reason, count in sorted(outcome.unconfirmed_reasons.items()):
            outcome.figures[f"unconfirmed: {reason}"] = count
        text = table(outcome.figures)
        print("\n" + text + "\n", flush=True)
        details = {
            "args": vars(args),
            "settled": settled,
            "figures": outcome.figures,
            "violations": [asdict(v) for v in outcome.violations],
            "unconfirmed": outcome.unconfirmed,
            "kills": run.kills,
        }
        (run.dir / "result.json").write_text(json.dumps(details, indent=1, default=str))
        (run.dir / "result.md").write_text(text + "\n")
        if outcome.violations:
            log(f"{len(outcome.violations)} VIOLATIONS (all in {run.dir / 'result.json'}):")
            for violation in outcome.violations[:50]:
                print("  " + str(violation), flush=True)
            return 1
        log(f"every invariant holds; logs and results in {run.dir}")
        return 0
    finally:
        run.cleanup()
        signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(143)  # runs the finally blocks: everything started is stopped
