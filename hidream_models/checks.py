"""System checks: configuration mistakes shown by ``manage.py check``, with the fix."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Info, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from .conf import SETTINGS, hidream_settings


@register(Tags.compatibility)
def check_hidream_settings(app_configs=None, **kwargs):
    messages = []
    for name in SETTINGS:
        try:
            getattr(hidream_settings, name)
        except ImproperlyConfigured as exc:
            messages.append(Error(str(exc), id="hidream_models.E001"))
    if messages:
        return messages
    if not hidream_settings.API_TOKEN.strip():
        messages.append(
            Warning(
                "HIDREAM_API_TOKEN is not set: submitting to HiDream will fail.",
                hint="Set it to the token from HiDream's console, or run the simulator "
                "(manage.py hidream_simulator) and point HIDREAM_BASE_URL at it.",
                id="hidream_models.W001",
            )
        )
    messages.extend(_check_throttle_cache())
    messages.extend(_check_sqlite_files())
    callback = hidream_settings.CALLBACK_BASE_URL
    if callback and not callback.startswith("https://") and not settings.DEBUG:
        messages.append(
            Warning(
                "HIDREAM_CALLBACK_BASE_URL is not HTTPS while DEBUG is off: the callback "
                "token would travel in clear text.",
                hint="Use the shop's public https:// address.",
                id="hidream_models.W002",
            )
        )
    if not callback:
        messages.append(
            Info(
                "HIDREAM_CALLBACK_BASE_URL is empty: HiDream cannot call back, so results "
                "arrive only by polling (manage.py hidream_sync --loop must run).",
                hint="Set it to the shop's public base URL, e.g. https://shop.example.com.",
                id="hidream_models.I001",
            )
        )
    return messages


# Caches that each process keeps to itself: a throttle counting there allows the rate once
# per process (per gunicorn worker), or, for the dummy cache, never counts at all.
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


def _check_throttle_cache() -> list:
    if not hidream_settings.API_CREATE_RATE:
        return []
    alias = hidream_settings.THROTTLE_CACHE
    backend = settings.CACHES[alias].get("BACKEND", "")
    if backend not in PROCESS_LOCAL_CACHES:
        return []
    return [
        Warning(
            f"The API's throttle (HIDREAM_API_CREATE_RATE) counts in the cache {alias!r}, "
            f"{backend.rsplit('.', 1)[-1]}, which each process keeps to itself: with several "
            "web processes (gunicorn workers) the rate is allowed once per process.",
            hint="Point HIDREAM_THROTTLE_CACHE at a cache all web processes share: Redis "
            "(django.core.cache.backends.redis.RedisCache), Memcached, the database "
            "(DatabaseCache, after manage.py createcachetable) or files on one machine "
            "(FileBasedCache).",
            id="hidream_models.W003",
        )
    ]


def _is_file_database(name) -> bool:
    name = str(name or "")
    return bool(name) and name != ":memory:" and "mode=memory" not in name


def _check_sqlite_files(databases: dict | None = None) -> list:
    """W004: a SQLite file shared by the web, the worker and ``hidream_sync`` needs WAL (readers
    never wait for the writer) and IMMEDIATE transactions (a writer waits for the lock at its
    start, within ``timeout``, instead of failing halfway with "database is locked")."""
    messages = []
    for alias, database in (settings.DATABASES if databases is None else databases).items():
        if database.get("ENGINE") != "django.db.backends.sqlite3":
            continue
        if not _is_file_database(database.get("NAME")):
            continue
        options = database.get("OPTIONS") or {}
        wal = "journal_mode=wal" in str(options.get("init_command", "")).replace(" ", "").lower()
        immediate = str(options.get("transaction_mode", "")).upper() == "IMMEDIATE"
        if wal and immediate:
            continue
        missing = [
            text for ok, text in ((wal, "WAL"), (immediate, "IMMEDIATE transactions")) if not ok
        ]
        messages.append(
            Warning(
                f"The SQLite database {alias!r} is a file used without "
                f"{' and '.join(missing)}: the web, the worker and hidream_sync writing at "
                'once fail with "database is locked".',
                hint='Add to its OPTIONS: "init_command": "PRAGMA journal_mode=WAL;", '
                '"transaction_mode": "IMMEDIATE", "timeout": 20. With ATOMIC_REQUESTS '
                "every request then takes the write lock: a shop in production belongs on "
                "PostgreSQL.",
                id="hidream_models.W004",
            )
        )
    return messages
