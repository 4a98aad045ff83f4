"""URLs from outside, read once the way the HTTP client reads them, and judged by one policy.

Two parsers that disagree about a URL are a hole: ``http://169.254.169.254\\@hidreamai.com/``
is ``hidreamai.com`` to ``urllib.parse.urlsplit`` and ``169.254.169.254`` to urllib3. So
every URL the app takes from outside is read here, by urllib3's own ``parse_url``, and the
pieces it yields are what the app connects to (``downloads``) or hands on (to HiDream):
nothing parses a URL a second time to decide anything.

``read_url`` refuses what has no single reading (backslashes, user-info, control characters
and white space, a missing scheme or host, an IPv6 zone). Then one function per policy:

- ``check_fetch_url``: a URL the app itself fetches (a result picture, a template preview,
  every redirect). Its host must be allowed (``HIDREAM_ALLOWED_RESULT_HOSTS``, or
  ``HIDREAM_BASE_URL``'s host on ``HIDREAM_BASE_URL``'s port only); the name is resolved once
  and every address must be public (unless it is that base URL, e.g. the simulator on
  loopback). The answer names the address to connect to, so a second lookup (DNS rebinding)
  cannot move the connection elsewhere.
- ``check_given_url``: a URL the app hands to HiDream (an image URL given to the API), which
  HiDream fetches: its host must be public. Names are not resolved here (that would be a DNS
  query inside a web request, and the shop never connects to it); IP literals in every
  spelling and names local by definition are refused.

This module knows no settings: callers pass what a policy needs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.utils.translation import gettext as _
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

Resolver = Callable[[str, int], list[str]]

DEFAULT_PORTS = {"http": 80, "https": 443}
LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".lan", ".home.arpa")
#: NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4 address.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
#: NAT64's local-use prefix (RFC 8215): translated to whatever the local network chooses.
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
#: What inet_aton reads as an IPv4 address: one to four parts, each decimal, octal or hex.
_IPV4_PART = r"(?:0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)"
_IPV4_SPELLING = re.compile(rf"{_IPV4_PART}(?:\.{_IPV4_PART}){{0,3}}")
#: IPv4-translated addresses (RFC 2765): the last 32 bits are an IPv4 address.
IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
#: Global unicast IPv6 is allocated from here; anything else (site-local, ULA...) is not public.
GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
#: Inside it but for documentation only (RFC 9637), which not every Python knows yet.
DOCUMENTATION_V6 = ipaddress.IPv6Network("3fff::/20")
#: What RFC 3986 calls the authority: after "scheme://", up to the first "/", "?" or "#".
_AUTHORITY = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#]*)")


class URLRefused(ValueError):
    """A URL that may not be used; ``str()`` says why, for the person who gave it.

    ``transient`` is true when trying again later may succeed (a name that did not resolve).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class ReadURL:
    """A URL as the HTTP client reads it: ``host`` is lower-case, without brackets."""

    url: str  # the URL as urllib3 writes it back (this is what is sent or fetched)
    scheme: str
    host: str
    port: int  # explicit, or the scheme's default
    request_uri: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


@dataclass(frozen=True)
class FetchTarget:
    """A URL the app may fetch, and the one address the connection must go to."""

    read: ReadURL
    address: str


def _has_unreadable_character(url: str) -> bool:
    # Control characters (C0, DEL, C1, format characters) and white space are read
    # differently by different parsers (some strip them, some stop there, some keep them).
    return any(unicodedata.category(c)[0] in "CZ" for c in url)


def read_url(url: object) -> ReadURL:
    """Read an absolute http(s) URL the way urllib3 does, or raise ``URLRefused``."""
    if not isinstance(url, str) or not url:
        raise URLRefused(_("only http:// or https:// URLs that name a host are accepted."))
    if _has_unreadable_character(url):
        raise URLRefused(
            _("the URL contains white space or a control character; percent-encode it.")
        )
    if "\\" in url:
        raise URLRefused(
            _("the URL contains a backslash, which HTTP clients read in different ways.")
        )
    try:
        parsed = parse_url(url)
    except (LocationParseError, ValueError):
        raise URLRefused(_("the URL cannot be read: check its host and port.")) from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise URLRefused(_("only http:// or https:// URLs that name a host are accepted."))
    authority = _AUTHORITY.match(url)
    if parsed.auth is not None or (authority and "@" in authority.group(1)):
        raise URLRefused(
            _("the URL carries a user name or password (user@host); give it without them.")
        )
    # A trailing dot names the same host (the root zone), but certificates never carry it.
    host = (parsed.host or "").lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise URLRefused(_("only http:// or https:// URLs that name a host are accepted."))
    if "%" in host:
        raise URLRefused(_("the URL names an IPv6 zone, which is local by definition."))
    port = parsed.port or DEFAULT_PORTS[parsed.scheme]
    return ReadURL(
        url=parsed.url,
        scheme=parsed.scheme,
        host=host,
        port=port,
        request_uri=parsed.request_uri,
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, where it stands for one."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48
        return ip.sixtofour
    if ip.teredo is not None:  # 2001::/32: (server, client)
        return ip.teredo[1]
    if int(ip) >> 32 == 0:  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some)
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in NAT64_PREFIX or ip in IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(address: str) -> bool:
    """True for a globally reachable unicast address, in every IPv6 form of one.

    False for private, loopback, link-local, shared, reserved, multicast and unspecified
    addresses, and for IPv6 addresses that carry such an IPv4 address (mapped, compatible,
    NAT64, 6to4, Teredo). Raises ``ValueError`` when ``address`` is no IP address.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id or ip in NAT64_LOCAL:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return embedded.is_global and not embedded.is_multicast
        if ip not in GLOBAL_UNICAST or ip in DOCUMENTATION_V6:
            return False
    return ip.is_global and not ip.is_multicast


def _literal_address(host: str) -> str | None:
    """The IP address ``host`` spells, in any spelling a C resolver accepts, else None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if _IPV4_SPELLING.fullmatch(host):
        # "127.1", "2130706433", "0x7f000001", "017700000001": all 127.0.0.1 to inet_aton,
        # which getaddrinfo (ours, and most fetchers') uses for numeric hosts.
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            # Numeric, but not to inet_aton ("0x", "127.0x.0x.1", a part out of range):
            # other parsers (WHATWG's, so browsers and Node) read some of them as addresses
            # (an empty "0x" is 0). No public host is spelt so: refused as the unspecified
            # address.
            return str(ipaddress.IPv4Address(0))
    return None


def is_public_host(host: str) -> bool:
    """False for an IP literal that is not public and for names local by definition
    (localhost, *.local, *.internal...). Other names are not resolved (see the module doc)."""
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        return False
    address = _literal_address(host)
    if address is not None:
        return is_public_address(address)
    return not any(host == name.lstrip(".") or host.endswith(name) for name in LOCAL_NAMES)


def host_is_allowed(host: str, allowed: Iterable[str]) -> bool:
    """Exact match, or a leading-dot pattern matching the domain and its subdomains."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower()
        if not pattern:
            continue
        if pattern.startswith("."):
            if host == pattern[1:] or host.endswith(pattern):
                return True
        elif host == pattern.rstrip("."):
            return True
    return False


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses a host resolves to (IPv4 and IPv6), in the resolver's order."""
    addresses: list[str] = []
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_given_url(url: object) -> str:
    """An image URL to hand to HiDream: returned as urllib3 writes it, or ``URLRefused``."""
    read = read_url(url)
    if not is_public_host(read.host):
        raise URLRefused(
            _(
                "the URL points at a private, loopback or link-local address; give one HiDream "
                "can reach on the internet, or upload the file."
            )
        )
    return read.url


def check_fetch_url(
    url: object,
    *,
    allowed_hosts: Iterable[str],
    base_url: str,
    resolver: Resolver = resolve_host,
) -> FetchTarget:
    """A URL the app may fetch, with the address to connect to; or ``URLRefused``.

    ``base_url`` (``HIDREAM_BASE_URL``) is trusted with its own scheme and port, private
    address and all: it is the API the shop talks to anyway (the simulator on loopback in the
    demo). Over https a spoofed DNS answer for it still fails TLS verification.
    """
    read = read_url(url)
    base = read_url(base_url) if base_url else None
    is_base = base is not None and (read.scheme, read.host, read.port) == (
        base.scheme,
        base.host,
        base.port,
    )
    if not is_base and not host_is_allowed(read.host, allowed_hosts):
        raise URLRefused(
            _("%(host)s is not one of the allowed result hosts (HIDREAM_ALLOWED_RESULT_HOSTS).")
            % {"host": read.host}
        )
    literal = _literal_address(read.host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = resolver(read.host.rstrip("."), read.port)
        except (OSError, UnicodeError) as exc:
            raise URLRefused(
                _("could not resolve %(host)s: %(error)s") % {"host": read.host, "error": exc},
                transient=True,
            ) from None
    if not addresses:
        raise URLRefused(
            _("could not resolve %(host)s: no address.") % {"host": read.host}, transient=True
        )
    if not is_base:
        blocked = [address for address in addresses if not _is_public_answer(address)]
        if blocked:
            raise URLRefused(
                _("%(host)s resolves to a non-public address (%(ips)s).")
                % {"host": read.host, "ips": ", ".join(blocked)}
            )
    return FetchTarget(read, addresses[0])


def _is_public_answer(address: str) -> bool:
    try:
        return is_public_address(address)
    except ValueError:  # a resolver answer that is no address at all
        return False
