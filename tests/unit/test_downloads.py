"""Safe result downloads: the address/host guards (no DNS, no network), then real downloads
from a tiny HTTP server on 127.0.0.1 (the only network these tests use)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hidream_models.downloads import check_download_url, download_image
from hidream_models.exceptions import HiDreamDownloadError
from hidream_models.url_policy import host_is_allowed, is_public_address
from tests.conftest import make_image_bytes


@pytest.fixture
def no_network(monkeypatch):
    """Any DNS lookup or outgoing connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network used: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


class RecordingResolver:
    """A resolver that answers from a table and records what it was asked."""

    def __init__(self, answers=None, error=None):
        self.answers = answers or {}
        self.error = error
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host, port):
        self.calls.append((host, port))
        if self.error:
            raise self.error
        return list(self.answers.get(host, []))


@pytest.fixture
def hosts(settings):
    settings.HIDREAM_BASE_URL = "https://api.hidream.test"
    settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["hidreamai.com", ".hidreamai.com", "cdn.example.net"]
    return settings


# -- is_public_address -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1",
        "10.255.255.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.10",
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",
        "0.0.0.0",  # noqa: S104 (an address to classify, not to bind)
        "100.64.0.1",
        "224.0.0.251",
        "::1",
        "::",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::5",
        "fd12:3456::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "ff02::1",
    ],
)
def test_non_public_addresses(no_network, address):
    assert is_public_address(address) is False


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2001:4860:4860::8888", "::ffff:8.8.4.4"]
)
def test_public_addresses(no_network, address):
    assert is_public_address(address) is True


# -- host_is_allowed ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("hidreamai.com", ("hidreamai.com",), True),
        ("HiDreamAI.COM", ("hidreamai.com",), True),
        ("hidreamai.com.", ("hidreamai.com",), True),
        ("cdn.hidreamai.com", ("hidreamai.com",), False),
        ("cdn.hidreamai.com", (".hidreamai.com",), True),
        ("a.b.hidreamai.com", (".hidreamai.com",), True),
        ("hidreamai.com", (".hidreamai.com",), True),
        ("evilhidreamai.com", (".hidreamai.com",), False),
        ("evilhidreamai.com", ("hidreamai.com",), False),
        ("hidreamai.com.evil.net", ("hidreamai.com", ".hidreamai.com"), False),
        ("hidreamai.co", ("hidreamai.com",), False),
        ("other.net", ("", "."), False),
        ("", ("",), False),
        ("cdn.example.net", ("hidreamai.com", "cdn.example.net"), True),
    ],
)
def test_host_is_allowed(no_network, host, allowed, expected):
    assert host_is_allowed(host, allowed) is expected


# -- check_download_url with an injected resolver ----------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://cdn.hidreamai.com/x.jpg",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "gopher://cdn.hidreamai.com/x",
        "//cdn.hidreamai.com/x.jpg",
        "http:///x.jpg",
        "cdn.hidreamai.com/x.jpg",
    ],
)
def test_non_http_urls_are_refused(hosts, no_network, url):
    resolver = RecordingResolver({"cdn.hidreamai.com": ["8.8.8.8"]})
    with pytest.raises(HiDreamDownloadError, match="only http"):
        check_download_url(url, resolver=resolver)
    assert resolver.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/x.jpg",
        "https://hidreamai.com.evil.example/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x.jpg",
        "https://cdn.example.net.attacker.io/x.jpg",
    ],
)
def test_hosts_not_allowed_are_refused_without_resolving(hosts, no_network, url):
    resolver = RecordingResolver({"evil.example": ["8.8.8.8"]})
    with pytest.raises(HiDreamDownloadError) as info:
        check_download_url(url, resolver=resolver)
    assert "HIDREAM_ALLOWED_RESULT_HOSTS" in str(info.value)
    assert info.value.transient is False
    assert resolver.calls == []


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["192.168.0.7"],
        ["172.20.0.2"],
        ["127.0.0.1"],
        ["169.254.169.254"],
        ["::1"],
        ["fe80::abcd"],
        ["::ffff:10.0.0.1"],
        ["8.8.8.8", "192.168.0.1"],  # one bad answer is enough (DNS rebinding)
    ],
)
def test_allowed_host_resolving_to_non_public_address_is_refused(hosts, no_network, addresses):
    resolver = RecordingResolver({"cdn.hidreamai.com": addresses})
    with pytest.raises(HiDreamDownloadError) as info:
        check_download_url("https://cdn.hidreamai.com/r/1.jpg", resolver=resolver)
    text = str(info.value)
    assert "non-public" in text
    for address in addresses:
        if not is_public_address(address):
            assert address in text
    assert resolver.calls == [("cdn.hidreamai.com", 443)]


@pytest.mark.parametrize(
    ("url", "expected_call"),
    [
        ("https://cdn.hidreamai.com/r/1.jpg", ("cdn.hidreamai.com", 443)),
        ("http://cdn.hidreamai.com/r/1.jpg", ("cdn.hidreamai.com", 80)),
        ("https://CDN.HiDreamAI.com:8443/r/1.jpg", ("cdn.hidreamai.com", 8443)),
        ("https://cdn.example.net/r/2.png", ("cdn.example.net", 443)),
    ],
)
def test_allowed_host_resolving_to_public_address_is_accepted(
    hosts, no_network, url, expected_call
):
    resolver = RecordingResolver(
        {
            "cdn.hidreamai.com": ["93.184.216.34", "2606:2800:220:1::"],
            "cdn.example.net": ["8.8.8.8"],
        }
    )
    target = check_download_url(url, resolver=resolver)
    assert resolver.calls == [expected_call]
    # The connection is pinned to the first address the one lookup gave.
    assert target.address == resolver.answers[expected_call[0]][0]


def test_resolver_failure_is_transient(hosts, no_network):
    resolver = RecordingResolver(error=socket.gaierror(-2, "Name or service not known"))
    with pytest.raises(HiDreamDownloadError) as info:
        check_download_url("https://cdn.hidreamai.com/r/1.jpg", resolver=resolver)
    assert info.value.transient is True
    assert "cdn.hidreamai.com" in str(info.value)


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("http://127.0.0.1:8765", "http://127.0.0.1:8765/results/1.jpg"),
        ("https://api.hidream.test", "https://api.hidream.test/results/1.jpg"),
        ("http://localhost:9000", "http://LOCALHOST:9000/r.png"),
    ],
)
def test_base_url_host_is_accepted_on_its_own_port_even_on_loopback(
    settings, no_network, base_url, url
):
    settings.HIDREAM_BASE_URL = base_url
    settings.HIDREAM_ALLOWED_RESULT_HOSTS = []
    resolver = RecordingResolver({"api.hidream.test": ["10.1.2.3"], "localhost": ["127.0.0.1"]})
    target = check_download_url(url, resolver=resolver)
    # An IP literal needs no lookup; a name is looked up once and pinned.
    assert target.address in ("127.0.0.1", "10.1.2.3")
    assert len(resolver.calls) <= 1


# -- real downloads from a loopback server -----------------------------------------------------


@dataclass
class Site:
    base: str
    routes: dict
    seen: list = field(default_factory=list)


def make_handler(site: Site):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            site.seen.append((self.path, dict(self.headers)))
            status, headers, body = site.routes.get(self.path, (404, {}, b"not here"))
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up on purpose (size cap)

        def log_message(self, format, *args):
            pass

    return Handler


@pytest.fixture
def site(settings, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    site = Site(base="", routes={})
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(site))
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    site.base = f"http://127.0.0.1:{server.server_address[1]}"
    settings.HIDREAM_BASE_URL = site.base
    settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["hidreamai.com", ".hidreamai.com"]
    settings.HIDREAM_CONNECT_TIMEOUT = 2.0
    settings.HIDREAM_READ_TIMEOUT = 2.0
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def no_dns(host, port):
    raise AssertionError(f"no DNS lookup expected, got {host}:{port}")


def jpeg(size=(320, 240)):
    return make_image_bytes(size=size)


def test_valid_jpeg_is_downloaded_and_verified(site):
    data = jpeg()
    site.routes["/r/ok.jpg"] = (
        200,
        {"Content-Type": "image/jpeg", "Content-Length": str(len(data))},
        data,
    )
    result = download_image(site.base + "/r/ok.jpg", resolver=no_dns)
    try:
        assert (result.checked.width, result.checked.height) == (320, 240)
        assert (result.checked.format, result.checked.extension) == ("JPEG", "jpg")
        assert result.size == len(data)
        assert result.file.read() == data
    finally:
        result.file.close()
    path, headers = site.seen[0]
    assert path == "/r/ok.jpg"
    assert "Authorization" not in headers  # the API token never goes with a download
    assert headers["User-Agent"].startswith("hidream-models/")


def test_redirect_to_the_same_allowed_host_is_followed(site):
    data = make_image_bytes(size=(64, 48), fmt="PNG")
    site.routes["/r/moved.png"] = (302, {"Location": "/r/final.png", "Content-Length": "0"}, b"")
    site.routes["/r/final.png"] = (200, {"Content-Type": "image/png"}, data)
    result = download_image(site.base + "/r/moved.png", resolver=no_dns)
    result.file.close()
    assert result.checked.extension == "png"
    assert [path for path, _ in site.seen] == ["/r/moved.png", "/r/final.png"]


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/json", "text/plain"])
def test_html_or_text_is_refused(site, ctype):
    site.routes["/r/page"] = (200, {"Content-Type": ctype}, b"<html><body>Login</body></html>")
    with pytest.raises(HiDreamDownloadError) as info:
        download_image(site.base + "/r/page", resolver=no_dns)
    assert ctype.split(";")[0] in str(info.value)
    assert info.value.transient is False


def test_non_image_body_with_image_type_is_refused(site):
    site.routes["/r/fake.jpg"] = (200, {"Content-Type": "image/jpeg"}, b"GIF89a not really")
    with pytest.raises(HiDreamDownloadError, match="not an image"):
        download_image(site.base + "/r/fake.jpg", resolver=no_dns)


def test_gif_and_truncated_results_are_refused(site):
    gif = make_image_bytes(size=(30, 30), fmt="GIF")
    cut = jpeg()[:2000]
    site.routes["/r/a.gif"] = (200, {"Content-Type": "image/gif"}, gif)
    site.routes["/r/cut.jpg"] = (200, {"Content-Type": "image/jpeg"}, cut)
    with pytest.raises(HiDreamDownloadError, match="GIF"):
        download_image(site.base + "/r/a.gif", resolver=no_dns)
    with pytest.raises(HiDreamDownloadError, match="damaged"):
        download_image(site.base + "/r/cut.jpg", resolver=no_dns)


@pytest.mark.parametrize("with_length", [True, False])
def test_body_larger_than_the_cap_is_refused(site, settings, with_length):
    settings.HIDREAM_MAX_DOWNLOAD_BYTES = 4096
    data = jpeg(size=(900, 700))
    assert len(data) > 4096
    headers = {"Content-Type": "image/jpeg"}
    if with_length:
        headers["Content-Length"] = str(len(data))
    site.routes["/r/big.jpg"] = (200, headers, data)
    with pytest.raises(HiDreamDownloadError) as info:
        download_image(site.base + "/r/big.jpg", resolver=no_dns)
    text = str(info.value)
    assert "HIDREAM_MAX_DOWNLOAD_BYTES" in text and "4096" in text
    assert info.value.transient is False
    if with_length:  # refused on the declared size, before reading the body
        assert str(len(data)) in text


def test_body_at_the_cap_is_accepted(site, settings):
    data = jpeg(size=(60, 40))
    settings.HIDREAM_MAX_DOWNLOAD_BYTES = max(len(data), 1024)
    site.routes["/r/fits.jpg"] = (200, {"Content-Type": "image/jpeg"}, data)
    result = download_image(site.base + "/r/fits.jpg", resolver=no_dns)
    result.file.close()
    assert result.size == len(data)


@pytest.mark.parametrize(
    "target",
    [
        "http://blocked.invalid/x.jpg",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_host_not_allowed_is_refused_before_connecting(
    site, target, loopback_only
):
    site.routes["/r/jump.jpg"] = (302, {"Location": target, "Content-Length": "0"}, b"")
    resolver = RecordingResolver({"blocked.invalid": ["93.184.216.34"]})
    with pytest.raises(HiDreamDownloadError) as info:
        download_image(site.base + "/r/jump.jpg", resolver=resolver)
    assert loopback_only.addresses == []
    assert resolver.calls == []
    assert [path for path, _ in site.seen] == ["/r/jump.jpg"]
    assert "Refused" in str(info.value)


def test_redirect_loop_stops(site):
    site.routes["/r/loop.jpg"] = (302, {"Location": "/r/loop.jpg", "Content-Length": "0"}, b"")
    with pytest.raises(HiDreamDownloadError, match="[Tt]oo many redirects"):
        download_image(site.base + "/r/loop.jpg", resolver=no_dns)
    assert 1 < len(site.seen) <= 10


@pytest.mark.parametrize("status", [403, 404, 410])
def test_gone_results_say_the_link_may_have_expired(site, status):
    site.routes["/r/old.jpg"] = (status, {"Content-Type": "text/plain"}, b"nope")
    with pytest.raises(HiDreamDownloadError) as info:
        download_image(site.base + "/r/old.jpg", resolver=no_dns)
    assert str(status) in str(info.value)
    assert "may have expired" in str(info.value)
    assert info.value.transient is False


@pytest.mark.parametrize("status", [503, 500, 429])
def test_server_errors_are_transient(site, status):
    site.routes["/r/busy.jpg"] = (status, {"Content-Type": "text/plain"}, b"busy")
    with pytest.raises(HiDreamDownloadError) as info:
        download_image(site.base + "/r/busy.jpg", resolver=no_dns)
    assert str(status) in str(info.value)
    assert info.value.transient is True
    assert "expired" not in str(info.value)


def test_connection_refused_is_transient(settings, monkeypatch):
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    settings.HIDREAM_BASE_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(HiDreamDownloadError) as info:
        download_image(f"http://127.0.0.1:{port}/r/x.jpg", resolver=no_dns)
    assert info.value.transient is True
