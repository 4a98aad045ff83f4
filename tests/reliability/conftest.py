"""Fixtures of the reliability tests: a loopback-only network, a database shared by threads and
processes, and small helpers to look at what the app stored.

``shared_db``: PostgreSQL's test database is already shared by every thread and process. The
default SQLite test database is in memory (shared cache): other connections get "database
table is locked" at once instead of waiting, and no other process can see it. So on SQLite
the test switches the default connection to a temporary *file* with the demo's settings for a
database shared by processes (WAL, a 20 s busy timeout, ``BEGIN IMMEDIATE``); every thread the
test starts calls ``shared_db.bind()`` to use it too, and subprocesses get ``shared_db.url``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connections
from PIL import Image

# --- the network rule: loopback only -----------------------------------------------------------


# --- one database for threads and processes ----------------------------------------------------

SQLITE_SHARED_OPTIONS = {
    # As shop_demo.settings does for a SQLite file shared by web, worker and sync processes.
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}


@dataclass
class SharedDB:
    vendor: str
    url: str  # DATABASE_URL for a subprocess using shop_demo.settings
    _settings: dict | None = None

    def bind(self) -> None:
        """Make the calling thread's default connection the shared database (SQLite only)."""
        if self._settings is not None:
            wrapper_class = type(connections["default"])
            connections["default"] = wrapper_class(self._settings, alias="default")


def _postgres_url(settings_dict: dict) -> str:
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{settings_dict['NAME']}"


@pytest.fixture
def shared_db(transactional_db, tmp_path) -> SharedDB:
    original = connections["default"]
    if original.vendor != "sqlite":
        yield SharedDB(original.vendor, _postgres_url(original.settings_dict))
        return
    path = tmp_path / "shared.sqlite3"
    file_settings = {**original.settings_dict, "NAME": str(path), "OPTIONS": SQLITE_SHARED_OPTIONS}
    db = SharedDB("sqlite", f"sqlite:///{path}", file_settings)
    db.bind()
    ContentType.objects.clear_cache()
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield db
    finally:
        connections["default"].close()
        connections["default"] = original
        ContentType.objects.clear_cache()


# --- callbacks -------------------------------------------------------------------------------


@pytest.fixture
def callback_guard(live_server, settings):
    """Point notify_url at the live server; returns what to hold while touching the database
    as callbacks may arrive (on SQLite the callback view is serialised, see serial_urls)."""
    from tests.reliability import serial_urls

    settings.HIDREAM_CALLBACK_BASE_URL = live_server.url
    if connections["default"].vendor == "sqlite":
        settings.ROOT_URLCONF = "tests.reliability.serial_urls"
        return serial_urls.LOCK
    return contextlib.nullcontext()


# --- threads ---------------------------------------------------------------------------------


def run_threads(targets) -> None:
    """Start every target in a thread of its own, and wait for all of them (a minute at most)."""
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)


def race(shared_db, calls) -> list[str]:
    """Run each call from its own thread on its own connection to ``shared_db``, all released
    at once by a barrier; returns the errors they raised (repr)."""
    start = threading.Barrier(len(calls))
    errors: list[str] = []

    def runner(call):
        def run():
            shared_db.bind()
            try:
                start.wait(timeout=10)
                call()
            except Exception as exc:
                errors.append(repr(exc))
            finally:
                connections.close_all()

        return run

    run_threads([runner(call) for call in calls])
    return errors


# --- looking at storage --------------------------------------------------------------------


def stored_files(root: Path) -> list[Path]:
    """Every file under ``root`` (empty when it does not exist)."""
    return sorted(path for path in Path(root).rglob("*") if path.is_file())


def assert_complete_pictures(root: Path) -> list[Path]:
    """Every file under ``root`` is a whole picture that Pillow verifies and decodes."""
    files = stored_files(root)
    for path in files:
        with Image.open(path) as picture:
            picture.verify()
        with Image.open(path) as picture:
            picture.load()  # a truncated file fails here
    return files
