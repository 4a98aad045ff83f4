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
