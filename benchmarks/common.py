"""What every benchmark shares: the run's environment, the database, processes, fixtures, rows.

``python -m benchmarks`` calls ``BenchRun.open()`` before anything imports Django models: it
makes a temporary folder, starts the HiDream simulator on a free loopback port, points the
environment at them (``DATABASE_URL``, ``MEDIA_ROOT``, ``HIDREAM_*``), sets Django up with
``benchmarks.settings`` and makes a fresh database with the migrations applied: a SQLite
*file* in the temporary folder by default, or, when ``DATABASE_URL`` is set, a database of
its own on that server (``test_<name>``, created and dropped like the test runner does).
The processes the benchmarks start (gunicorn, db_worker, loadgen, memory children) inherit
that environment through ``BenchRun.child_env()``.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SIM_TOKEN = "bench-sim-token"  # noqa: S105 (the local simulator's, not a secret)


# -- result rows -------------------------------------------------------------------------


@dataclass
class Row:
    """One figure of ``results.json``: a value, its baseline from the same run, the goal."""

    name: str
    value: float
    baseline: float
    ratio: float | None
    unit: str
    goal: str
    holds: bool


def row(name: str, value, baseline, unit: str, goal: str, holds: bool) -> dict:
    value, baseline = float(value), float(baseline)
    ratio = round(value / baseline, 3) if baseline else None
    return asdict(Row(name, round(value, 3), round(baseline, 3), ratio, unit, goal, bool(holds)))


def median(values) -> float:
    return statistics.median(values)


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (0-100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def settle() -> None:
    """Before a timed run: collect garbage and, on SQLite, checkpoint the WAL, so no run pays
    for the garbage or the checkpoint of the one before it (the same for value and baseline)."""
    import gc

    from django.db import connection

    gc.collect()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# -- processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


class Processes:
    """Processes started by a benchmark, stopped (by their own pid) when it ends."""

    def __init__(self, run: BenchRun):
        self.run = run
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        logfile = open(self.run.tmp / f"{name}.log", "ab")  # noqa: SIM115 (closed by the child)
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=logfile, stderr=subprocess.STDOUT)
        logfile.close()
        self.procs.append(proc)
        return proc

    def gunicorn(self, env: dict[str, str], workers: int = 2) -> tuple[subprocess.Popen, int]:
        port = free_port()
        proc = self.start(
            "gunicorn",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "benchmarks.wsgi:application",
                "--workers",
                str(workers),
                "--bind",
                f"127.0.0.1:{port}",
                "--backlog",
                "2048",
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
            ],
            env,
        )
        wait_for_port(port, proc)
        return proc, port

    def db_workers(self, env: dict[str, str], count: int, interval: float = 0.05):
        return [
            self.start(
                f"db_worker{n}",
                [
                    PYTHON,
                    "manage.py",
                    "db_worker",
                    "--interval",
                    str(interval),
                    "--no-startup-delay",
                    "--no-reload",
                    "--verbosity",
                    "0",
                    "--worker-id",
                    f"bench-{os.getpid()}-{n}",
                ],
                env,
            )
            for n in range(count)
        ]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop_all()


# -- the run -------------------------------------------------------------------------------


class BenchRun:
    """The environment of one ``python -m benchmarks`` run (see the module docstring)."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="hidream-bench-"))
        self.sim = None
        self.database = ""  # a description for the report
        self._old_db_name = None
        self._user_db_url = os.environ.get("DATABASE_URL", "")

    @classmethod
    def open(cls) -> BenchRun:
        run = cls()
        try:
            run._start()
        except BaseException:
            run.close()
            raise
        return run

    def _start(self) -> None:
        from benchmarks.simulator import BenchSimulator

        self.sim = BenchSimulator(host="127.0.0.1", port=0, token=SIM_TOKEN, delay=0.3).start()
        media = self.tmp / "media"
        media.mkdir()
        os.environ.update(
            {
                "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
                "MEDIA_ROOT": str(media),
                "HIDREAM_API_TOKEN": SIM_TOKEN,
                "HIDREAM_BASE_URL": self.sim.base_url,
                "HIDREAM_CALLBACK_BASE_URL": "",
                "HIDREAM_MAX_CONCURRENT_REQUESTS": "0",
                "HIDREAM_MAX_IMAGES_PER_MINUTE": "0",
                "LOG_LEVEL": "ERROR",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        if not self._user_db_url:
            os.environ["DATABASE_URL"] = f"sqlite:///{self.tmp / 'bench.sqlite3'}"

        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection
        from django.test.utils import setup_test_environment

        setup_test_environment()
        if connection.vendor == "sqlite":
            call_command("migrate", verbosity=0, interactive=False)
            self.database = f"SQLite file ({connection.settings_dict['NAME']}), WAL"
        else:
            self._old_db_name = connection.settings_dict["NAME"]
            name = connection.creation.create_test_db(
                verbosity=0, autoclobber=True, serialize=False
            )
            parts = urlsplit(self._user_db_url)
            os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
            self.database = f"{connection.vendor} database {name} (made for this run)"

    def child_env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({key: str(value) for key, value in overrides.items()})
        return env

    def close(self) -> None:
        if self.sim is not None:
            self.sim.stop()
        if self._old_db_name is not None:
            from django.db import connection

            connection.creation.destroy_test_db(self._old_db_name, verbosity=0)
        shutil.rmtree(self.tmp, ignore_errors=True)


# -- fixtures ------------------------------------------------------------------------------


def jpeg_bytes(size=(600, 800), color=(200, 40, 60)) -> bytes:
    """A small real product photo (a garment shape on a light background)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, (245, 245, 240))
    w, h = size
    ImageDraw.Draw(image).polygon(
        [(w * 0.3, h * 0.1), (w * 0.7, h * 0.1), (w * 0.9, h * 0.9), (w * 0.1, h * 0.9)],
        fill=color,
    )
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def store_file(name: str, data: bytes) -> str:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(data))


def product_image() -> str:
    """One shared product photo in storage (its name), made on first use."""
    from django.core.files.storage import default_storage

    name = "products/bench-dress.jpg"
    if not default_storage.exists(name):
        store_file(name, jpeg_bytes())
    return name


def superuser():
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first()
    return user or user_model.objects.create_superuser("bench-admin", "bench@example.com", "pw")


def make_products(count: int, *, with_image: bool = True, prefix: str = "P") -> list:
    from shop_demo.catalog.models import Product

    image = product_image() if with_image else ""
    start = Product.objects.count()
    Product.objects.bulk_create(
        [
            Product(
                name=f"Bench dress {prefix}{start + n:05d}",
                sku=f"BENCH-{prefix}-{start + n:05d}",
                price="49.90",
                image=image,
            )
            for n in range(count)
        ],
        batch_size=500,
    )
    return list(Product.objects.filter(sku__startswith=f"BENCH-{prefix}-").order_by("pk"))


def make_tasks(products, *, image_count: int = 1, **fields) -> list:
    """Queued tasks for these products, written directly (nothing is enqueued)."""
    from django.contrib.contenttypes.models import ContentType

    from hidream_models.models import GenerationMode, ModelImageTask

    content_type = ContentType.objects.get_for_model(type(products[0]))
    tasks = [
        ModelImageTask(
            content_type=content_type,
            object_id=str(product.pk),
            product_label=str(product),
            source_image=product.image.name if product.image else "",
            mode=GenerationMode.TEMPLATE,
            human_template_id="h-001",
            scene_template_id="s-001",
            image_count=image_count,
            **fields,
        )
        for product in products
    ]
    return ModelImageTask.objects.bulk_create(tasks, batch_size=500)


def reset_data() -> None:
    """Remove what a benchmark left: tasks (with pictures, callbacks, bookings), jobs,
    products, admin log, sessions. Users stay."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.sessions.models import Session
    from django_tasks_db.models import DBTaskResult

    from hidream_models.models import (
        CallbackEvent,
        GeneratedImage,
        HiDreamRateReservation,
        HiDreamRequestSlot,
        ModelImageTask,
    )
    from shop_demo.catalog.models import Product, ProductImage

    for model in (  # children first: PostgreSQL checks the foreign keys at each commit
        CallbackEvent,
        HiDreamRateReservation,
        ProductImage,
        GeneratedImage,
        ModelImageTask,
        DBTaskResult,
        Product,
        LogEntry,
        Session,
    ):
        model.objects.all()._raw_delete(model.objects.db)
    HiDreamRequestSlot.objects.update(holder="", leased_until=None)
