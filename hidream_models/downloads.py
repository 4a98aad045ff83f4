"""Fetching result pictures safely (DESIGN §5).

Only http(s), only from the allowed result hosts, never to a private, loopback or link-local
address unless that host is the configured ``HIDREAM_BASE_URL`` itself (the simulator on
loopback), redirects re-checked hop by hop, bytes capped while streaming, and the file verified
by Pillow before anyone stores it. No API token is ever sent with a download.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin, urlsplit

import requests
from django.utils.translation import gettext as _

from .client import USER_AGENT
from .conf import hidream_settings
from .exceptions import HiDreamDownloadError
from .images import CheckedImage, ImageProblem, verify_image

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
SPOOL_BYTES = 1024 * 1024

Resolver = Callable[[str, int], list[str]]


def resolve_host(host: str, port: int) -> list[str]:
    """All addresses a host name resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def is_public_address(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".lan", ".home.arpa")


def is_public_host(host: str) -> bool:
    """False for an IP literal that is not public and for names that are local by
    definition (localhost, *.local, *.internal...). Other names are not resolved: that would
    send a DNS query from inside a web request, and HiDream, not the shop, fetches them."""
    host = host.lower().rstrip(".").strip("[]")
    if not host:
        return False
    try:
        return is_public_address(host)
    except ValueError:
        pass  # a name, or an IPv4 address in one of the older spellings below
    if re.fullmatch(r"[0-9a-fx.]+", host):
        # "127.1", "2130706433", "0x7f000001", "017700000001": all 127.0.0.1 to the C
        # resolver HiDream's fetcher may use, so read them the way inet_aton does.
        try:
            return is_public_address(socket.inet_ntoa(socket.inet_aton(host)))
        except OSError:
            return False
    return not any(host == name.lstrip(".") or host.endswith(name) for name in LOCAL_NAMES)


def host_is_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Exact match, or a leading-dot pattern matching the domain and its subdomains."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        if not pattern:
            continue
        if pattern.startswith("."):
            if host == pattern[1:] or host.endswith(pattern):
                return True
        elif host == pattern:
            return True
    return False


def check_download_url(url: str, resolver: Resolver = resolve_host) -> None:
    """Raise ``HiDreamDownloadError`` unless ``url`` may be fetched (see the module doc)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HiDreamDownloadError(
            _("Refused to download %(url)r: only http(s) URLs with a host are fetched.")
            % {"url": url}
        )
    host = parts.hostname.lower()
    if not host_is_allowed(host, hidream_settings.result_hosts()):
        raise HiDreamDownloadError(
            _(
                "Refused to download from %(host)s: it is not one of the allowed result hosts "
                "(HIDREAM_ALLOWED_RESULT_HOSTS)."
            )
            % {"host": host}
        )
    base_host = (urlsplit(hidream_settings.BASE_URL).hostname or "").lower()
    if host == base_host:
        return  # the configured API host itself, e.g. the simulator on 127.0.0.1
    try:
        addresses = resolver(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError as exc:
        raise HiDreamDownloadError(
            _("Could not resolve %(host)s: %(error)s") % {"host": host, "error": exc},
            transient=True,
        ) from None
    blocked = [address for address in addresses if not is_public_address(address)]
    if blocked or not addresses:
        raise HiDreamDownloadError(
            _("Refused to download from %(host)s: it resolves to a non-public address (%(ips)s).")
            % {"host": host, "ips": ", ".join(blocked) or "none"}
        )


@dataclass
class DownloadedImage:
    """A verified picture in a temporary file; close ``file`` when done."""

    file: IO[bytes]
    size: int
    checked: CheckedImage


def download_image(
    url: str,
    *,
    session: requests.Session | None = None,
    resolver: Resolver = resolve_host,
) -> DownloadedImage:
    """Download and verify one result picture; raises ``HiDreamDownloadError`` on any problem."""
    own_session = session is None
    session = session or requests.Session()
    try:
        response = _get_following_checked_redirects(session, url, resolver)
        with response:
            spool = _read_capped(response, url)
    finally:
        if own_session:
            session.close()
    try:
        checked = verify_image(spool, _("The result picture at %(url)s") % {"url": url})
    except ImageProblem as exc:
        spool.close()
        raise HiDreamDownloadError(str(exc)) from None
    size = spool.seek(0, 2)
    spool.seek(0)
    return DownloadedImage(spool, size, checked)


def _get_following_checked_redirects(
    session: requests.Session, url: str, resolver: Resolver
) -> requests.Response:
    timeout = (hidream_settings.CONNECT_TIMEOUT, hidream_settings.READ_TIMEOUT)
    for _hop in range(MAX_REDIRECTS + 1):
        check_download_url(url, resolver)
        try:
            response = session.get(
                url,
                stream=True,
                timeout=timeout,
                allow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept": "image/*"},
            )
        except requests.RequestException as exc:
            raise HiDreamDownloadError(
                _("Could not download %(url)s: %(error)s")
                % {"url": url, "error": type(exc).__name__},
                transient=True,
            ) from None
        if response.is_redirect:
            location = response.headers.get("Location", "")
            response.close()
            url = urljoin(url, location)
            continue
        if response.status_code != 200:
            response.close()
            transient = response.status_code == 429 or response.status_code >= 500
            gone = (
                _(" (the link may have expired)") if response.status_code in (403, 404, 410) else ""
            )
            raise HiDreamDownloadError(
                _("Downloading %(url)s answered HTTP %(status)s%(gone)s.")
                % {"url": url, "status": response.status_code, "gone": gone},
                transient=transient,
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type.startswith("text/") or content_type in ("application/json",):
            response.close()
            raise HiDreamDownloadError(
                _("%(url)s served %(type)s instead of an image (an error page?).")
                % {"url": url, "type": content_type}
            )
        return response
    raise HiDreamDownloadError(_("Too many redirects while downloading %(url)s.") % {"url": url})


def _read_capped(response: requests.Response, url: str) -> IO[bytes]:
    cap = hidream_settings.MAX_DOWNLOAD_BYTES
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise HiDreamDownloadError(
            _("%(url)s is %(n)s bytes, more than HIDREAM_MAX_DOWNLOAD_BYTES (%(cap)s).")
            % {"url": url, "n": int(declared), "cap": cap}
        )
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 (returned)
    total = 0
    try:
        for chunk in response.iter_content(CHUNK_BYTES):
            total += len(chunk)
            if total > cap:
                raise HiDreamDownloadError(
                    _("%(url)s sent more than HIDREAM_MAX_DOWNLOAD_BYTES (%(cap)s) bytes; stopped.")
                    % {"url": url, "cap": cap}
                )
            spool.write(chunk)
    except requests.RequestException as exc:
        spool.close()
        raise HiDreamDownloadError(
            _("The download of %(url)s broke off: %(error)s")
            % {"url": url, "error": type(exc).__name__},
            transient=True,
        ) from None
    except HiDreamDownloadError:
        spool.close()
        raise
    spool.seek(0)
    return spool
