"""Fetching pictures safely: result pictures and template previews (DESIGN §5).

Every URL, the first and each redirect, passes ``url_policy.check_fetch_url``: http(s) only,
read the way urllib3 reads it, from an allowed host (or ``HIDREAM_BASE_URL`` on its own port),
resolved once to public addresses (or the base URL's, e.g. the simulator on loopback). The
connection then goes to the very address that was checked, with TLS still verified against
the host name, so a second DNS answer cannot send it elsewhere; proxies from the environment
are not used (a proxy would make its own lookup). Bytes are capped while streaming and the file
is verified by Pillow before anyone stores it. No API token is ever sent with a download.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin

import certifi
import urllib3
from django.utils.translation import gettext as _
from urllib3.exceptions import HTTPError as URLLib3Error

from .client import USER_AGENT
from .conf import hidream_settings
from .exceptions import HiDreamDownloadError
from .images import CheckedImage, ImageProblem, verify_image
from .url_policy import (
    FetchTarget,
    Resolver,
    URLRefused,
    check_fetch_url,
    resolve_host,
)

#: The CA bundle requests (and so the API client) trusts.
CA_CERTS: str = certifi.where()

MAX_REDIRECTS = 3
CHUNK_BYTES = 64 * 1024
SPOOL_BYTES = 1024 * 1024
#: A whole download (every hop, every byte) may take at most this many read timeouts, and
#: never less than a minute: the read timeout alone bounds each read, not a server that
#: sends one byte every few seconds.
DEADLINE_READ_TIMEOUTS = 4
MIN_DEADLINE_SECONDS = 60.0


def check_download_url(url: str, resolver: Resolver = resolve_host) -> FetchTarget:
    """The address to fetch ``url`` from, or ``HiDreamDownloadError`` saying why not."""
    try:
        return check_fetch_url(
            url,
            allowed_hosts=hidream_settings.ALLOWED_RESULT_HOSTS,
            base_url=hidream_settings.BASE_URL,
            resolver=resolver,
        )
    except URLRefused as exc:
        message = (
            _("Could not download %(url)s: %(reason)s")
            if exc.transient
            else _("Refused to download %(url)s: %(reason)s")
        )
        raise HiDreamDownloadError(
            message % {"url": url, "reason": exc}, transient=exc.transient
        ) from None


@dataclass
class DownloadedImage:
    """A verified picture in a temporary file; close ``file`` when done."""

    file: IO[bytes]
    size: int
    checked: CheckedImage


def deadline_seconds() -> float:
    """The longest one download may take, start to end (the sweep waits longer)."""
    return max(MIN_DEADLINE_SECONDS, DEADLINE_READ_TIMEOUTS * hidream_settings.READ_TIMEOUT)


def download_image(url: str, *, resolver: Resolver = resolve_host) -> DownloadedImage:
    """Download and verify one picture; raises ``HiDreamDownloadError`` on any problem."""
    deadline = time.monotonic() + deadline_seconds()
    pool, response = _get_following_checked_redirects(url, resolver)
    try:
        spool = _read_capped(response, url, deadline)
    finally:
        _close(pool, response)
    try:
        checked = verify_image(spool, _("The result picture at %(url)s") % {"url": url})
    except ImageProblem as exc:
        spool.close()
        raise HiDreamDownloadError(str(exc)) from None
    size = spool.seek(0, 2)
    spool.seek(0)
    return DownloadedImage(spool, size, checked)


def _pool(target: FetchTarget) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the checked address; TLS verified against the host name."""
    timeout = urllib3.Timeout(
        connect=hidream_settings.CONNECT_TIMEOUT, read=hidream_settings.READ_TIMEOUT
    )
    read = target.read
    if read.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            target.address,
            read.port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=CA_CERTS,
            server_hostname=read.host,  # SNI
            assert_hostname=read.host,  # the certificate must name the host, not the address
        )
    return urllib3.HTTPConnectionPool(target.address, read.port, timeout=timeout, retries=False)


def _close(pool: urllib3.HTTPConnectionPool, response: urllib3.BaseHTTPResponse) -> None:
    response.release_conn()
    response.close()
    pool.close()


def _get_following_checked_redirects(
    url: str, resolver: Resolver
) -> tuple[urllib3.HTTPConnectionPool, urllib3.BaseHTTPResponse]:
    """The pool and the response of the last hop, whose status is 200 and type an image's."""
    previous_scheme = ""
    for _hop in range(MAX_REDIRECTS + 1):
        if previous_scheme == "https" and not url.lower().startswith("https://"):
            # What was asked for over TLS is not fetched in the clear (nor from anywhere else).
            raise HiDreamDownloadError(
                _("Refused to download %(url)s: a redirect from https to another scheme.")
                % {"url": url}
            )
        target = check_download_url(url, resolver)
        previous_scheme = target.read.scheme
        pool = _pool(target)
        try:
            response = pool.urlopen(
                "GET",
                target.read.request_uri,
                headers={
                    "Host": target.read.host_header,
                    "User-Agent": USER_AGENT,
                    "Accept": "image/*",
                    # Pictures are compressed already; a compressed body would be bytes the
                    # cap and the deadline cannot see (endless empty deflate blocks).
                    "Accept-Encoding": "identity",
                },
                redirect=False,
                preload_content=False,
                retries=False,
            )
        except (URLLib3Error, OSError) as exc:
            pool.close()
            raise HiDreamDownloadError(
                _("Could not download %(url)s: %(error)s")
                % {"url": url, "error": type(exc).__name__},
                transient=True,
            ) from None
        if response.get_redirect_location():
            location = response.headers.get("Location", "")
            _close(pool, response)
            url = urljoin(target.read.url, location)
            continue
        if response.status != 200:
            transient = response.status == 429 or response.status >= 500
            gone = _(" (the link may have expired)") if response.status in (403, 404, 410) else ""
            _close(pool, response)
            raise HiDreamDownloadError(
                _("Downloading %(url)s answered HTTP %(status)s%(gone)s.")
                % {"url": url, "status": response.status, "gone": gone},
                transient=transient,
            )
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            _close(pool, response)
            raise HiDreamDownloadError(
                _("%(url)s came with Content-Encoding %(encoding)s; a picture is expected as is.")
                % {"url": url, "encoding": encoding}
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type.startswith("text/") or content_type in ("application/json",):
            _close(pool, response)
            raise HiDreamDownloadError(
                _("%(url)s served %(type)s instead of an image (an error page?).")
                % {"url": url, "type": content_type}
            )
        return pool, response
    raise HiDreamDownloadError(_("Too many redirects while downloading %(url)s.") % {"url": url})


def _read_capped(response: urllib3.BaseHTTPResponse, url: str, deadline: float) -> IO[bytes]:
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
        # read1: what one read of the socket brings (read() would wait for a whole chunk,
        # past the deadline). The body is taken as sent (compressed ones were refused above).
        while chunk := response.read1(CHUNK_BYTES, decode_content=False):
            total += len(chunk)
            if total > cap:
                raise HiDreamDownloadError(
                    _("%(url)s sent more than HIDREAM_MAX_DOWNLOAD_BYTES (%(cap)s) bytes; stopped.")
                    % {"url": url, "cap": cap}
                )
            spool.write(chunk)
            if time.monotonic() > deadline:
                raise HiDreamDownloadError(
                    _("The download of %(url)s took too long; stopped, to be tried again.")
                    % {"url": url},
                    transient=True,
                )
    except (URLLib3Error, OSError) as exc:
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
