"""The app's settings: every ``HIDREAM_*`` Django setting, its default, and its validation.

Read them through ``hidream_settings`` (``from hidream_models.conf import hidream_settings``).
Values are read lazily from ``django.conf.settings`` on first use, checked, and cached; the
cache is dropped whenever a ``HIDREAM_*`` setting changes (``override_settings`` in tests), in
the style of DRF's ``api_settings``.

A wrong value raises ``ImproperlyConfigured`` naming the setting, what it got and what it
wants. The token is a secret: its value never appears in a message or a ``repr``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

from .url_policy import URLRefused, read_url

PREFIX = "HIDREAM_"


@dataclass(frozen=True)
class Setting:
    """One setting: its default, the Python type it must have, and what it is for."""

    default: Any
    kind: type | tuple[type, ...]
    doc: str
    minimum: float | None = None
    choices: tuple[str, ...] | None = None


# The single source of truth for the settings; the README's table is written from this.
SETTINGS: dict[str, Setting] = {
    "API_TOKEN": Setting("", str, "Bearer token from HiDream's console. Required to submit."),
    "BASE_URL": Setting("https://hidreamai.com", str, "HiDream's API host (or the simulator's)."),
    "CALLBACK_BASE_URL": Setting(
        "",
        str,
        "Public base URL of the shop, e.g. https://shop.example.com. Empty: no notify_url is "
        "sent and results arrive by polling only.",
    ),
    "SUBMIT_PATH": Setting("/api-pub/ec/v3/image/model/async", str, "Submit endpoint path."),
    "RESULT_PATH": Setting(
        "/api-pub/ec/v3/image/model/async/results", str, "Task result endpoint path."
    ),
    "HUMAN_TEMPLATES_PATH": Setting(
        "/api-pub/ec/v3/template/model/human", str, "Human (model) template list path."
    ),
    "SCENE_TEMPLATES_PATH": Setting(
        "/api-pub/ec/v3/template/model/scene", str, "Scene template list path."
    ),
    "CONNECT_TIMEOUT": Setting(5.0, (int, float), "Seconds to wait for a connection.", 0.1),
    "READ_TIMEOUT": Setting(30.0, (int, float), "Seconds to wait for HiDream's answer.", 0.1),
    "MAX_ATTEMPTS": Setting(
        5,
        int,
        "Attempts on transient faults (connection errors, 429, 5xx): a submit or a "
        "download is marked failed after this many, a callback that could not be applied "
        "this often (and for longer than HIDREAM_TASK_DEADLINE) is marked error, and a sync "
        "pass stops polling after this many failed polls in a row (the next pass goes on; "
        "HIDREAM_TASK_DEADLINE ends a task's wait).",
        1,
    ),
    "RETRY_BACKOFF": Setting(
        2.0, (int, float), "Base of the exponential backoff between attempts, seconds.", 0
    ),
    "RETRY_BACKOFF_MAX": Setting(300.0, (int, float), "Longest wait between attempts, s.", 0),
    "POLL_INTERVAL": Setting(
        30.0, (int, float), "Seconds between two polls of the same unfinished task.", 1
    ),
    "CALLBACK_BATCH_WINDOW": Setting(
        0.05,
        (int, float),
        "Seconds during which a web process gathers the callbacks it stores into one job that "
        "applies them, run twice this long after the first; 0: one job per callback, at once.",
        0,
    ),
    "CALLBACK_GRACE": Setting(
        60.0,
        (int, float),
        "Seconds after submission before a task whose callback has not come is polled.",
        0,
    ),
    "TASK_DEADLINE": Setting(
        3600.0,
        (int, float),
        "Seconds after submission after which an unfinished task is failed.",
        1,
    ),
    "MAX_DOWNLOAD_BYTES": Setting(
        30 * 1024 * 1024, int, "Largest result file accepted, bytes.", 1024
    ),
    "MAX_IMAGE_PIXELS": Setting(
        80_000_000, int, "Largest image (width x height) decoded, against decompression bombs.", 1
    ),
    "ALLOWED_RESULT_HOSTS": Setting(
        ["hidreamai.com", ".hidreamai.com"],
        (list, tuple),
        "Hosts results may be downloaded from; '.example.com' also allows subdomains. "
        "BASE_URL's host is allowed on BASE_URL's port only.",
    ),
    "SOURCE_IMAGE_MODE": Setting(
        "base64",
        str,
        "How the product image is sent: 'base64' (read from storage, fitted to 4K) or 'url' "
        "(the storage URL, which must be absolute http(s) and public).",
        choices=("base64", "url"),
    ),
    "MAX_CALLBACK_BYTES": Setting(
        256 * 1024, int, "Largest callback body accepted; larger ones get HTTP 413.", 1024
    ),
    "STORAGE_PREFIX": Setting(
        "hidream",
        str,
        "Folder in default storage for the app's files (results, uploads, published copies); "
        "not empty: the app knows its own files by it, and never sends one as a product photo.",
    ),
    "PRODUCT_MODELS": Setting(
        {},
        dict,
        "Models the REST API may name as products, with their image field, e.g. "
        "{'catalog.product': 'image'}. Others are refused.",
    ),
    "PUBLISHER": Setting(
        "",
        str,
        "Dotted path of the shop's publisher class (a HiDreamPublisher subclass) that puts "
        "approved pictures on products. Empty: pictures can be approved but not published.",
    ),
    "CREDITS_PER_IMAGE": Setting(
        None,
        (int, float, type(None)),
        "HiDream credits one picture costs on your plan; when set, pages and the API show a "
        "credit estimate next to picture counts.",
        0,
    ),
    "MAX_CONCURRENT_REQUESTS": Setting(
        3,
        int,
        "Most HiDream API requests in flight at once, across all workers (your plan's "
        "concurrency: 1, 3, 5, 7 or 10). 0: no limit.",
        0,
    ),
    "MAX_IMAGES_PER_MINUTE": Setting(
        100,
        int,
        "Most pictures submitted per rate window (a minute), across all workers; submissions "
        "beyond it are paced, not failed. 0: no limit.",
        0,
    ),
    "RATE_WINDOW": Setting(
        60.0,
        (int, float),
        "Length of the rate window in seconds: HiDream's is a minute; tests shorten it.",
        1,
    ),
    "RESEND_UNCONFIRMED": Setting(
        False,
        bool,
        "Resend submissions whose answer never came (and that HiDream may have accepted and "
        "billed) automatically. Off: staff decide.",
    ),
    "MAX_UPLOAD_BYTES": Setting(
        20 * 1024 * 1024,
        int,
        "Largest image or mask a person uploads (API file or base64, the admin's mask), bytes; "
        "base64 JSON bodies up to this are read whatever Django's DATA_UPLOAD_MAX_MEMORY_SIZE.",
        1,
    ),
    "IDEMPOTENCY_KEY_TTL": Setting(
        86400.0,
        (int, float),
        "Seconds an API Idempotency-Key is remembered (Stripe's 24 hours); after that the "
        "same key names a new request.",
        1,
    ),
    "API_CREATE_RATE": Setting(
        "60/min",
        (str, type(None)),
        "Throttle of the API's create, bulk and retry endpoints per user (DRF rate like "
        "'60/min'); empty for none.",
    ),
    "THROTTLE_CACHE": Setting(
        "default",
        str,
        "The cache (an alias in CACHES) the API's throttles count in. It must be shared by "
        "every web process (Redis, Memcached, the database or files), or each process counts "
        "on its own: manage.py check warns (W003).",
    ),
}


class HiDreamSettings:
    """Lazy, validated access to the ``HIDREAM_*`` settings as attributes without the prefix."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in SETTINGS:
            raise AttributeError(f"Unknown hidream setting {name!r}")
        if name not in self._cache:
            self._cache[name] = self._read(name)
        return self._cache[name]

    def __repr__(self) -> str:
        return "<HiDreamSettings (values hidden: the token is a secret)>"

    def reload(self) -> None:
        self._cache.clear()

    @staticmethod
    def _read(name: str) -> Any:
        spec = SETTINGS[name]
        full = PREFIX + name
        value = getattr(settings, full, spec.default)
        if value is None and not (isinstance(spec.kind, tuple) and type(None) in spec.kind):
            value = spec.default
        if (isinstance(value, bool) and spec.kind is not bool) or not isinstance(value, spec.kind):
            kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
            wanted = " or ".join(k.__name__ for k in kinds)
            shown = "<hidden>" if name == "API_TOKEN" else repr(value)
            raise ImproperlyConfigured(
                f"{full} must be a {wanted}, got {type(value).__name__} {shown}."
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ImproperlyConfigured(f"{full} must be a finite number, got {value!r}.")
        if spec.minimum is not None and value is not None and value < spec.minimum:
            raise ImproperlyConfigured(f"{full} must be at least {spec.minimum}, got {value!r}.")
        if spec.choices is not None and value not in spec.choices:
            raise ImproperlyConfigured(
                f"{full} must be one of {', '.join(spec.choices)}; got {value!r}."
            )
        if name in ("BASE_URL", "CALLBACK_BASE_URL") and value:
            try:
                read_url(value)
            except URLRefused as exc:
                raise ImproperlyConfigured(
                    f"{full} must be an absolute http(s) URL like https://shop.example.com; "
                    f"got {value!r} ({exc})"
                ) from None
            value = value.rstrip("/")
        if name == "ALLOWED_RESULT_HOSTS":
            value = tuple(str(host).lower() for host in value)
        if name == "PRODUCT_MODELS":
            for label, field_name in value.items():
                if not isinstance(label, str) or label.count(".") != 1 or not field_name:
                    raise ImproperlyConfigured(
                        f"{full} maps 'app_label.model' to an image field name, e.g. "
                        f"{{'catalog.product': 'image'}}; got {label!r}: {field_name!r}."
                    )
            value = {label.lower(): field_name for label, field_name in value.items()}
        if name == "PUBLISHER" and value:
            from django.utils.module_loading import import_string

            try:
                import_string(value)
            except ImportError as exc:
                raise ImproperlyConfigured(
                    f"{full} = {value!r} cannot be imported: {exc}. Give the dotted path of a "
                    "HiDreamPublisher subclass, e.g. 'shop.publishing.GalleryPublisher'."
                ) from None
        if name == "STORAGE_PREFIX" and not value.strip("/ "):
            raise ImproperlyConfigured(
                f"{full} must name a folder, like 'hidream'; got {value!r}. The app recognises "
                "its own files (results, published copies) by it."
            )
        if name == "THROTTLE_CACHE" and value not in settings.CACHES:
            raise ImproperlyConfigured(
                f"{full} must name a cache in CACHES ({', '.join(settings.CACHES)}); got {value!r}."
            )
        if name == "API_CREATE_RATE" and value:
            from rest_framework.throttling import SimpleRateThrottle

            try:
                SimpleRateThrottle.parse_rate(None, value)
            except (ValueError, KeyError, IndexError):
                raise ImproperlyConfigured(
                    f"{full} must be a rate like '60/min' or '1000/day'; got {value!r}."
                ) from None
        return value

    def require_token(self) -> str:
        """The API token, or a clear error saying how to set it."""
        token = self.API_TOKEN.strip()
        if not token:
            raise ImproperlyConfigured(
                "HIDREAM_API_TOKEN is not set. Copy the token from HiDream's console into the "
                "HIDREAM_API_TOKEN setting (or environment variable in shop_demo), or run "
                "`manage.py hidream_simulator` and point HIDREAM_BASE_URL at it."
            )
        return token


hidream_settings = HiDreamSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith(PREFIX):
        hidream_settings.reload()


setting_changed.connect(_reload_on_change, dispatch_uid="hidream_models.conf.reload")
