"""Shared fixtures: storage in a temp folder, real product images, the simulator, job runner."""

from __future__ import annotations

import io
import ipaddress
import socket
import time
from dataclasses import dataclass, field

import pytest
from django.core.files.base import ContentFile
from django.utils import translation
from PIL import Image, ImageDraw

from tests import jobs


def make_image_bytes(size=(600, 800), color=(200, 40, 60), fmt="JPEG", exif_orientation=None):
    """A real picture made with Pillow: a coloured garment shape on a light background."""
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.polygon(
        [(w * 0.3, h * 0.1), (w * 0.7, h * 0.1), (w * 0.9, h * 0.9), (w * 0.1, h * 0.9)],
        fill=color,
    )
    out = io.BytesIO()
    kwargs = {}
    if exif_orientation:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif
    image.save(out, fmt, **kwargs)
    return out.getvalue()


@dataclass
class RefusedConnections:
    """Every non-loopback address, and every name not local, something in this process
    tried to reach."""

    addresses: list = field(default_factory=list)
    names: list = field(default_factory=list)


def _is_loopback(address) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX path
        return True
    try:
        return ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a name: sockets connect to addresses, so this should not happen


def _is_local_name(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    host = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True  # numeric: no DNS query is sent
    except ValueError:
        pass
    return host in ("localhost", socket.gethostname().lower()) or host.endswith(".localhost")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch) -> RefusedConnections:
    """No test leaves loopback, even a failing one: a connection to any other address and a
    DNS query for any name but localhost's are refused (and recorded) in this process."""
    refused = RefusedConnections()
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(sock, address):
        if not _is_loopback(address):
            refused.addresses.append(address)
            raise ConnectionRefusedError(f"tests stay on loopback, not {address!r}")
        return connect(sock, address)

    def guarded_connect_ex(sock, address):
        if not _is_loopback(address):
            refused.addresses.append(address)
            raise ConnectionRefusedError(f"tests stay on loopback, not {address!r}")
        return connect_ex(sock, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_local_name(host):
            refused.names.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"tests send no DNS query for {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return refused


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return tmp_path / "media"


@pytest.fixture(autouse=True)
def _clean_jobs():
    jobs.clear_jobs()
    yield
    jobs.clear_jobs()


@pytest.fixture(autouse=True)
def _default_language():
    """Each test starts in LANGUAGE_CODE. A test-client request through LocaleMiddleware
    leaves its language active in the thread, so a test after one in Chinese would otherwise
    write its messages in Chinese."""
    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def _new_callback_batch():
    """Each test's first callback queues its own apply job: the batch window of a callback
    posted by the test before must not cover it."""
    from hidream_models.services.callbacks import _batcher

    _batcher.reset()


@pytest.fixture
def run_jobs():
    return jobs.run_jobs


@pytest.fixture
def make_product(db):
    from shop_demo.catalog.models import Product

    counter = {"n": 0}

    def make(with_image=True, **kwargs):
        counter["n"] += 1
        n = counter["n"]
        product = Product(
            name=kwargs.pop("name", f"Test dress {n}"),
            sku=kwargs.pop("sku", f"SKU-{n:04d}"),
            price=kwargs.pop("price", "49.90"),
            **kwargs,
        )
        if with_image:
            product.image.save(
                f"dress-{n}.jpg",
                ContentFile(make_image_bytes(color=(40 * n % 255, 90, 160))),
                save=False,
            )
        product.save()
        return product

    return make


@pytest.fixture
def simulator(settings):
    """The HiDream simulator on a free loopback port; settings point at it."""
    from hidream_models.simulator import HiDreamSimulator

    sim = HiDreamSimulator(
        host="127.0.0.1", port=0, token=settings.HIDREAM_API_TOKEN, delay=0.3
    ).start()
    settings.HIDREAM_BASE_URL = sim.base_url
    try:
        yield sim
    finally:
        sim.stop()


def wait_for(predicate, timeout=10.0, interval=0.05, message="condition"):
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
