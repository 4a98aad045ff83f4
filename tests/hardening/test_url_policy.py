"""URL checks read URLs the way the HTTP client does (issue 13, point 2).

Two policies, one function each (``hidream_models.url_policy``): URLs the app fetches
(``check_fetch_url``, through ``downloads.check_download_url``) and URLs it hands to HiDream
(``check_given_url``, behind the API's image URL). Every test stays on loopback: addresses
outside it are only ever given to the check functions, through a resolver the test controls,
and the suite-wide ``loopback_only`` guard refuses any other connection or DNS query.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from hidream_models import downloads
from hidream_models.downloads import check_download_url, download_image
from hidream_models.exceptions import HiDreamDownloadError
from hidream_models.models import ModelImageTask
from hidream_models.url_policy import (
    URLRefused,
    check_given_url,
    is_public_address,
    read_url,
)
from tests.conftest import make_image_bytes
from tests.stub_server import StubServer

JPEG = make_image_bytes(size=(64, 48))
PROMPT = {"prompt": "a model in a park", "image_count": 1}

#: 169.254.169.254, the cloud metadata address, written every way an IPv6 address can carry it.
METADATA_AS_IPV6 = [
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::ffff:a9fe:a9fe",  # IPv4-mapped, hex
    "::169.254.169.254",  # IPv4-compatible
    "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix
    "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use prefix
    "2002:a9fe:a9fe::1",  # 6to4
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254 (obfuscated)
]
METADATA_AS_IPV4 = [
    "169.254.169.254",
    "2852039166",  # decimal
    "0xa9fea9fe",  # hex
    "0251.0376.0251.0376",  # octal
    "0xa9.0xfe.0xa9.0xfe",
    "169.254.43518",
]


@pytest.fixture
def hosts(settings):
    settings.HIDREAM_BASE_URL = "https://hidreamai.com"
    settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["hidreamai.com", ".hidreamai.com"]
    return settings


class Resolver:
    """Answers from a script (one answer a call, the last one repeating) and counts calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host, port):
        self.calls.append((host, port))
        return list(self.answers[min(len(self.calls), len(self.answers)) - 1])


# -- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254\\@hidreamai.com/x.jpg",
        "http://169.254.169.254\\\\@hidreamai.com/x.jpg",
        "http://hidreamai.com\\@169.254.169.254/x.jpg",
        "http://hidreamai.com\\x.jpg",
        "https://cdn.hidreamai.com/a\\b.jpg",
    ],
)
def test_backslashes_are_refused_by_both_policies(hosts, url):
    resolver = Resolver(["93.184.216.34"])
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url(url, resolver)
    assert "backslash" in str(caught.value)
    assert resolver.calls == []
    with pytest.raises(URLRefused, match="backslash"):
        check_given_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://user@hidreamai.com/x.jpg",
        "http://user:pw@cdn.hidreamai.com/x.jpg",
        "http://hidreamai.com@169.254.169.254/x.jpg",
        "http://@hidreamai.com/x.jpg",
        "http://169.254.169.254%40hidreamai.com@hidreamai.com/x.jpg",
    ],
)
def test_user_info_is_refused_by_both_policies(hosts, url):
    resolver = Resolver(["93.184.216.34"])
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url(url, resolver)
    assert "user name or password" in str(caught.value)
    with pytest.raises(URLRefused, match="user name or password"):
        check_given_url(url)
    assert resolver.calls == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hidreamai.com/x.jpg\r\nX-Injected: 1",
        "http://hidreamai.com/\x00.jpg",
        "http://hidream\tai.com/x.jpg",
        "http://hidreamai.com /x.jpg",
        " http://hidreamai.com/x.jpg",
        "http://hidreamai.com/x\x7f.jpg",
        "http://hidreamai.com/x\u0085.jpg",
        "http://hidreamai.com/x\u200b.jpg",
    ],
)
def test_control_characters_and_white_space_are_refused(hosts, url):
    with pytest.raises(URLRefused, match="control character"):
        read_url(url)
    with pytest.raises(HiDreamDownloadError):
        check_download_url(url, Resolver(["93.184.216.34"]))


def test_the_url_handed_on_is_the_url_as_the_http_client_reads_it():
    assert check_given_url("HTTPS://CDN.Example.COM/a%20b.jpg?x=1") == (
        "https://cdn.example.com/a%20b.jpg?x=1"
    )
    read = read_url("http://[2606:4700::1111]:8080/p?q")
    assert (read.host, read.port, read.request_uri) == ("2606:4700::1111", 8080, "/p?q")
    assert read.host_header == "[2606:4700::1111]:8080"


# -- addresses in every spelling ----------------------------------------------------------------


@pytest.mark.parametrize("address", METADATA_AS_IPV6 + ["::1", "::", "fe80::1", "fc00::1"])
def test_ipv6_forms_of_private_addresses_are_not_public(address):
    assert is_public_address(address) is False


@pytest.mark.parametrize("address", ["2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_ipv6_forms_of_public_addresses_are_public(address):
    assert is_public_address(address) is True


@pytest.mark.parametrize("address", METADATA_AS_IPV6)
def test_given_urls_with_ipv6_forms_of_the_metadata_address_are_refused(address):
    with pytest.raises(URLRefused, match="private, loopback or link-local"):
        check_given_url(f"http://[{address}]/latest/meta-data/")


@pytest.mark.parametrize("host", METADATA_AS_IPV4)
def test_given_urls_with_decimal_octal_and_hex_ipv4_are_refused(host):
    with pytest.raises(URLRefused, match="private, loopback or link-local"):
        check_given_url(f"http://{host}/latest/meta-data/")


@pytest.mark.parametrize("address", METADATA_AS_IPV6 + ["169.254.169.254", "127.0.0.1"])
def test_an_allowed_host_resolving_to_any_form_of_a_private_address_is_refused(hosts, address):
    resolver = Resolver([address])
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url("https://cdn.hidreamai.com/x.jpg", resolver)
    assert "non-public address" in str(caught.value)


@pytest.mark.parametrize("host", METADATA_AS_IPV4 + [f"[{a}]" for a in METADATA_AS_IPV6])
def test_fetching_from_an_address_literal_that_is_not_allowed_is_refused(hosts, host):
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url(f"http://{host}/latest/meta-data/", Resolver([]))
    assert "HIDREAM_ALLOWED_RESULT_HOSTS" in str(caught.value)


def test_a_name_that_resolves_to_loopback_is_refused(settings):
    """``localhost`` resolves to loopback through this machine's own resolver; it is not the
    configured API host, so the non-public check applies."""
    settings.HIDREAM_BASE_URL = "https://hidreamai.com"
    settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["localhost", "loop.hidreamai.com"]
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url("http://localhost:8000/x.jpg")
    assert "non-public address" in str(caught.value)
    with pytest.raises(HiDreamDownloadError):
        check_download_url("http://loop.hidreamai.com/x.jpg", Resolver(["127.0.0.53"]))
    for url in ("http://localhost/x.jpg", "http://shop.localhost./x.jpg"):
        with pytest.raises(URLRefused):
            check_given_url(url)


# -- resolved once, connected to what was checked --------------------------------------------


def test_a_resolver_that_answers_public_then_private_is_asked_once(hosts):
    """DNS rebinding: the check's answer is the address the connection uses."""
    resolver = Resolver(["93.184.216.34"], ["169.254.169.254"])
    target = check_download_url("https://cdn.hidreamai.com/x.jpg", resolver)
    assert target.address == "93.184.216.34"
    assert resolver.calls == [("cdn.hidreamai.com", 443)]


def test_an_answer_mixing_public_and_private_addresses_is_refused(hosts):
    resolver = Resolver(["93.184.216.34", "169.254.169.254"])
    with pytest.raises(HiDreamDownloadError, match="169.254.169.254"):
        check_download_url("https://cdn.hidreamai.com/x.jpg", resolver)


def test_the_connection_goes_to_the_checked_address_not_to_a_second_lookup(settings):
    """The base URL's host is a name; its first answer is where the stub listens, a second
    answer would point elsewhere (and a lookup by the HTTP client itself would be refused
    by the suite's DNS guard). The download works, so it connected to the checked address,
    and the Host header still names the host."""
    with StubServer([(200, {"Content-Type": "image/jpeg"}, JPEG, 0)]) as stub:
        port = int(stub.url.rsplit(":", 1)[1])
        settings.HIDREAM_BASE_URL = f"http://sim.hidream.test:{port}"
        resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
        downloaded = download_image(f"http://sim.hidream.test:{port}/r/x.jpg", resolver=resolver)
        downloaded.file.close()
    assert resolver.calls == [("sim.hidream.test", port)]
    assert stub.requests[0][2]["Host"] == f"sim.hidream.test:{port}"


def test_the_base_host_is_allowed_on_its_own_port_only(settings, loopback_only):
    with StubServer([(200, {"Content-Type": "image/jpeg"}, JPEG, 0)]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        settings.HIDREAM_ALLOWED_RESULT_HOSTS = []
        other = int(stub.url.rsplit(":", 1)[1]) + 1
        for url in (f"http://127.0.0.1:{other}/x.jpg", "http://127.0.0.1/x.jpg"):
            with pytest.raises(HiDreamDownloadError, match="HIDREAM_ALLOWED_RESULT_HOSTS"):
                download_image(url, resolver=Resolver([]))
        assert stub.requests == []
        download_image(f"{stub.url}/x.jpg", resolver=Resolver([])).file.close()
        assert len(stub.requests) == 1


def test_proxies_from_the_environment_are_not_used(settings, monkeypatch):
    """A proxy would look the name up again (and see the request): downloads ignore it."""
    with (
        StubServer([(200, {"Content-Type": "image/jpeg"}, JPEG, 0)]) as proxy,
        StubServer([(200, {"Content-Type": "image/jpeg"}, JPEG, 0)]) as origin,
    ):
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.setenv(var, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        settings.HIDREAM_BASE_URL = origin.url
        download_image(f"{origin.url}/r/x.jpg", resolver=Resolver([])).file.close()
    assert proxy.requests == []
    assert [request[1] for request in origin.requests] == ["/r/x.jpg"]


# -- TLS is verified against the name, not the address ----------------------------------------


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A private CA and two server certificates from it: one for sim.hidream.test, one for
    another name."""
    if shutil.which("openssl") is None:
        pytest.skip("the TLS tests make their certificates with the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=hidream test CA", "-keyout", "ca.key", "-out", "ca.pem",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign",
        cwd=folder,
    )  # fmt: skip
    for name in ("sim.hidream.test", "other.hidream.test"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder,
        )  # fmt: skip
        (folder / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=folder,
        )  # fmt: skip
    return folder


class _ImageHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(JPEG)))
        self.end_headers()
        self.wfile.write(JPEG)

    def log_message(self, *args):
        pass


@pytest.fixture
def tls_server(certificates):
    servers = []

    def start(name):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates / f"{name}.pem", certificates / f"{name}.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_tls_is_verified_against_the_host_name_at_the_pinned_address(
    settings, monkeypatch, certificates, tls_server
):
    monkeypatch.setattr(downloads, "CA_CERTS", str(certificates / "ca.pem"))
    port = tls_server("sim.hidream.test")
    settings.HIDREAM_BASE_URL = f"https://sim.hidream.test:{port}"
    resolver = Resolver(["127.0.0.1"])
    downloaded = download_image(f"https://sim.hidream.test:{port}/r/x.jpg", resolver=resolver)
    downloaded.file.close()
    assert downloaded.checked.format == "JPEG"


def test_tls_with_a_certificate_for_another_name_is_refused(
    settings, monkeypatch, certificates, tls_server
):
    monkeypatch.setattr(downloads, "CA_CERTS", str(certificates / "ca.pem"))
    port = tls_server("other.hidream.test")
    settings.HIDREAM_BASE_URL = f"https://sim.hidream.test:{port}"
    with pytest.raises(HiDreamDownloadError) as caught:
        download_image(f"https://sim.hidream.test:{port}/r/x.jpg", resolver=Resolver(["127.0.0.1"]))
    assert caught.value.transient  # a certificate problem may be mended: tried again later


def test_tls_from_an_unknown_authority_is_refused(settings, certificates, tls_server):
    port = tls_server("sim.hidream.test")  # the test CA is not in the trusted bundle
    settings.HIDREAM_BASE_URL = f"https://sim.hidream.test:{port}"
    with pytest.raises(HiDreamDownloadError):
        download_image(f"https://sim.hidream.test:{port}/r/x.jpg", resolver=Resolver(["127.0.0.1"]))


# -- the API's image URL is checked by the given-URL policy -----------------------------------


@pytest.fixture
def api(db):
    user = User.objects.create_user("url-tester", password="x")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["generate", "view_modelimagetask", "view_product"])
    )
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254\\@example.com/x.png",
        "http://user@example.com/x.png",
        "http://[::169.254.169.254]/x.png",
        "http://[64:ff9b::a9fe:a9fe]/x.png",
        "http://[2002:a9fe:a9fe::1]/x.png",
        "http://2852039166/x.png",
        "http://0251.0376.0251.0376/x.png",
        "http://0xa9fea9fe/x.png",
    ],
)
def test_the_api_refuses_image_urls_that_a_client_would_read_as_private(api, url):
    response = api.post("/api/hidream/tasks/", {"image": url, **PROMPT}, format="json")
    assert response.status_code == 400, response.content
    assert "image" in response.json()
    assert not ModelImageTask.objects.exists()


def test_the_api_stores_the_url_as_the_http_client_reads_it(api):
    response = api.post(
        "/api/hidream/tasks/",
        {"image": "HTTPS://CDN.Example.COM/shirts/1.jpg", **PROMPT},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert ModelImageTask.objects.get().source_url == "https://cdn.example.com/shirts/1.jpg"


def test_a_resolver_answering_no_address_is_a_transient_failure(hosts):
    with pytest.raises(HiDreamDownloadError) as caught:
        check_download_url("https://cdn.hidreamai.com/x.jpg", Resolver([]))
    assert caught.value.transient and "no address" in str(caught.value)


@pytest.mark.parametrize("host", ["cafe.de", "abc.de", "facade.be", "0x.example", "deadbeef.com"])
def test_names_made_of_hex_letters_are_names_not_addresses(host):
    assert check_given_url(f"https://{host}/shirt.jpg") == f"https://{host}/shirt.jpg"


@pytest.mark.parametrize(
    "address", ["::ffff:0:a9fe:a9fe", "fec0::1", "5f00::1", "3fff::1", "100::1"]
)
def test_ipv6_outside_global_unicast_and_translated_ipv4_are_not_public(address):
    assert is_public_address(address) is False
    with pytest.raises(URLRefused):
        check_given_url(f"http://[{address}]/x.png")


def test_the_base_url_is_trusted_only_with_its_own_scheme(hosts):
    """``http://hidreamai.com:443`` is not the https base URL: a spoofed private answer for it
    would not meet TLS, so it gets no exemption."""
    with pytest.raises(HiDreamDownloadError, match="non-public"):
        check_download_url("http://hidreamai.com:443/x.jpg", Resolver(["10.0.0.5"]))


def test_an_empty_base_url_trusts_nothing(settings):
    settings.HIDREAM_BASE_URL = ""
    settings.HIDREAM_ALLOWED_RESULT_HOSTS = [".hidreamai.com"]
    target = check_download_url("https://cdn.hidreamai.com/x.jpg", Resolver(["93.184.216.34"]))
    assert target.address == "93.184.216.34"


def test_a_trailing_dot_names_the_same_host(hosts):
    target = check_download_url("https://cdn.hidreamai.com./x.jpg", Resolver(["93.184.216.34"]))
    assert target.read.host == "cdn.hidreamai.com"
    assert target.read.host_header == "cdn.hidreamai.com"


class _RedirectToHTTP(_ImageHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_from_https_to_http_is_refused(settings, monkeypatch, certificates):
    monkeypatch.setattr(downloads, "CA_CERTS", str(certificates / "ca.pem"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RedirectToHTTP)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(
        certificates / "sim.hidream.test.pem", certificates / "sim.hidream.test.key"
    )
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    server.location = f"http://sim.hidream.test:{port}/x.jpg"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.HIDREAM_BASE_URL = f"https://sim.hidream.test:{port}"
        settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["sim.hidream.test"]
        resolver = Resolver(["127.0.0.1"])
        with pytest.raises(HiDreamDownloadError, match="from https to another scheme"):
            download_image(f"https://sim.hidream.test:{port}/r/x.jpg", resolver=resolver)
        assert len(resolver.calls) == 1  # the http hop was refused before any lookup
    finally:
        server.shutdown()
        server.server_close()


class _Dripping(BaseHTTPRequestHandler):
    """Sends a picture one byte at a time, each well within the read timeout."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(JPEG)))
        self.end_headers()
        try:
            for index in range(len(JPEG)):
                self.wfile.write(JPEG[index : index + 1])
                self.wfile.flush()
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def log_message(self, *args):
        pass


def test_a_server_that_sends_a_byte_at_a_time_is_cut_off(settings, monkeypatch):
    """The read timeout bounds each read only; the download as a whole has a deadline."""
    monkeypatch.setattr(downloads, "MIN_DEADLINE_SECONDS", 0.5)
    settings.HIDREAM_READ_TIMEOUT = 0.1
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dripping)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        settings.HIDREAM_BASE_URL = base
        with pytest.raises(HiDreamDownloadError, match="took too long") as caught:
            download_image(f"{base}/r/x.jpg", resolver=Resolver([]))
        assert caught.value.transient
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host", ["0x", "127.0x.0x.1", "169.254.169.0x", "0x7f.0x.0x.0x1"])
def test_numeric_hosts_inet_aton_refuses_are_refused_too(host):
    """WHATWG parsers read an empty "0x" part as 0: these are loopback or 0.0.0.0 there."""
    with pytest.raises(URLRefused, match="private, loopback or link-local"):
        check_given_url(f"http://{host}/x.png")


def test_a_compressed_download_is_refused_and_identity_is_asked_for(settings):
    import gzip

    reply = (200, {"Content-Type": "image/jpeg", "Content-Encoding": "gzip"}, gzip.compress(JPEG))
    with StubServer([(*reply, 0)]) as stub:
        settings.HIDREAM_BASE_URL = stub.url
        with pytest.raises(HiDreamDownloadError, match="Content-Encoding gzip"):
            download_image(f"{stub.url}/r/x.jpg", resolver=Resolver([]))
    assert stub.requests[0][2]["Accept-Encoding"] == "identity"
