"""Query images fetched from http(s) URLs, guarded against server-side request forgery.

A server that fetches what its clients name must not become their way into its own network.
So, for the URL and again for every redirect (at most ``max_redirects``):

- only ``http`` and ``https``, no credentials in the URL;
- the host is resolved once, and every address it resolves to must be public: loopback, private,
  link-local, multicast, reserved, unspecified, shared (100.64.0.0/10) and site-local addresses
  are refused, IPv4 and IPv6 alike, including IPv4 addresses wrapped in IPv6 (``::ffff:127.0.0.1``,
  6to4, Teredo, NAT64);
- the connection goes to the address that was checked, with the name only in the Host header and
  TLS's SNI and certificate check: no second lookup, so a DNS answer that changes between the check
  and the connection (rebinding) is never used;
- the reply must be an image (``Content-Type: image/...``, no content encoding), of at most
  ``max_bytes``, all of it within ``timeout`` seconds (a watchdog shuts the socket, however slowly
  the server trickles); whether Pillow can decode it is the query's usual check.

``UrlPolicy.allow_networks`` widens the guard on purpose (a lab's own image server; the tests'
server on 127.0.0.1); nothing else does.
"""

from __future__ import annotations

import errno
import http.client
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection

from imgsearch.indexer.errors import InvalidInputError, quote
from imgsearch.search.errors import UrlFetchError, UrlNotAllowedError

DEFAULT_MAX_BYTES = 20 * 2**20
DEFAULT_TIMEOUT = 10.0  # seconds for the whole fetch, redirects included
DEFAULT_MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "imgsearch (query image fetch)"

# not caught by ipaddress's flags on every Python version: shared address space (RFC 6598), "this network"
_EXTRA_REFUSED = {ipaddress.ip_network("100.64.0.0/10"): "shared address space (100.64.0.0/10)",
                  ipaddress.ip_network("0.0.0.0/8"): "'this network' (0.0.0.0/8)",
                  ipaddress.ip_network("192.0.0.0/24"): "IETF protocol assignments (192.0.0.0/24)",
                  ipaddress.ip_network("198.18.0.0/15"): "benchmarking (198.18.0.0/15)"}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class UrlPolicy:
    """What the guard lets through.  ``allow_networks``: networks allowed although private or loopback;
    ``ca_certs``: the certificates https servers are checked against (default: certifi's bundle)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    allow_networks: tuple = ()
    ca_certs: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "allow_networks", parse_networks(self.allow_networks))
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise InvalidInputError(f"max_bytes must be a whole number >= 1, got {quote(self.max_bytes)}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0:
            raise InvalidInputError(f"timeout must be a number of seconds > 0, got {quote(self.timeout)}")
        if isinstance(self.max_redirects, bool) or not isinstance(self.max_redirects, int) or self.max_redirects < 0:
            raise InvalidInputError(f"max_redirects must be a whole number >= 0, got {quote(self.max_redirects)}")


def parse_networks(networks) -> tuple:
    """``networks`` (CIDR strings or ipaddress networks; one string may list several, comma-separated)
    as a tuple of ipaddress networks, or InvalidInputError naming the one that is not a network."""
    if isinstance(networks, str):
        networks = [n for n in networks.split(",") if n.strip()]
    parsed = []
    for n in networks or ():
        try:
            parsed.append(n if isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                          else ipaddress.ip_network(str(n).strip(), strict=False))
        except ValueError:
            raise InvalidInputError(f"{quote(n)} is not a network: write one as 127.0.0.1/32 or 10.0.0.0/8 "
                                    "or fd00::/8") from None
    return tuple(parsed)


def refusal(address: str, allow_networks=()) -> str | None:
    """Why the guard refuses to connect to ``address`` (an IP address), or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) names no other host
    if any(ip.version == n.version and ip in n for n in allow_networks):
        return None
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal(str(embedded), allow_networks)
            return reason and f"{reason} (IPv4 {embedded} inside IPv6 {ip})"
    flags = (("is_loopback", "loopback"), ("is_unspecified", "unspecified"), ("is_link_local", "link-local"),
             ("is_multicast", "multicast"), ("is_site_local", "site-local"))
    for flag, name in flags:  # the narrowest names first: 127.0.0.1 is private too, but loopback says more
        if getattr(ip, flag, False):  # IPv4 has no is_site_local
            return f"{ip} is a {name} address"
    for network, name in _EXTRA_REFUSED.items():
        if ip.version == network.version and ip in network:
            return f"{ip} is in {name}"
    for flag, name in (("is_reserved", "reserved"), ("is_private", "private")):
        if getattr(ip, flag):
            return f"{ip} is a {name} address"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str  # the name, as in the URL (IPv6 without brackets)
    port: int
    target: str  # path and query, what the request line asks for
    host_header: str


def _target(url: str) -> _Target:
    if not isinstance(url, str) or not url.strip():
        raise UrlNotAllowedError(f"url must be an http:// or https:// URL, got {quote(url)}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowedError(f"url {quote(url)} is malformed: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise UrlNotAllowedError(f"url {quote(url)}: only http and https URLs are fetched, not "
                                 f"{quote(parts.scheme + ':') if parts.scheme else 'a URL without a scheme'}")
    if not parts.hostname:
        raise UrlNotAllowedError(f"url {quote(url)} names no host")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowedError(f"url {quote(url)}: URLs with credentials (user:password@) are not fetched")
    scheme = parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    return _Target(scheme, host, port or default, (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                   shown if port in (None, default) else f"{shown}:{port}")


def _checked_address(t: _Target, url: str, allow_networks) -> str:
    """The one address to connect to: the host resolved once, every address it has checked."""
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        raise UrlFetchError(f"cannot resolve the host {quote(t.host)} of {quote(url)}: the name lookup failed "
                            f"({reason})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        # all or nothing: a name resolving to one public and one private address is refused
        reason = refusal(address, allow_networks)
        if reason:
            raise UrlNotAllowedError(f"url {quote(url)} is not allowed: {t.host} resolves to {reason}")
    if not addresses:
        raise UrlFetchError(f"cannot resolve the host of {quote(url)}: no addresses")
    return addresses[0]


def fetch_image(url: str, policy: UrlPolicy | None = None, *, deadline: float | None = None) -> bytes:
    """The body of the image at ``url``, fetched as the module docstring says, or UrlNotAllowedError /
    UrlFetchError saying why not.  ``deadline`` (a ``time.monotonic()`` instant) ends the fetch sooner than
    ``policy.timeout`` would: several fetches for one request share it."""
    policy = policy or UrlPolicy()
    own = time.monotonic() + policy.timeout
    deadline = own if deadline is None else min(own, deadline)
    current = url
    for hop in range(policy.max_redirects + 1):
        t = _target(current)
        address = _checked_address(t, current, policy.allow_networks)
        location = _get(t, address, current, url, policy, deadline)
        if isinstance(location, bytes):
            return location
        current = urljoin(current, location)
    raise UrlNotAllowedError(f"url {quote(url)} is not allowed: more than {policy.max_redirects} redirects")


def _get(t: _Target, address: str, url: str, first: str, policy: UrlPolicy, deadline: float):
    """GET one hop from ``address``: the image bytes, or the Location of a redirect (a str)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _too_slow(first, policy)
    timeout = remaining  # each socket operation's; the watchdog below bounds them all together
    if t.scheme == "https":
        import certifi

        # to the checked address, but TLS's SNI and certificate check are the URL's name's
        conn = HTTPSConnection(address, t.port, timeout=timeout, server_hostname=t.host, assert_hostname=t.host,
                               cert_reqs="CERT_REQUIRED", ca_certs=policy.ca_certs or certifi.where())
    else:
        conn = HTTPConnection(address, t.port, timeout=timeout)
    expired = threading.Event()
    opened = []  # the socket, kept here: http.client lets go of conn.sock once a closing reply's body is read

    def expire():  # the deadline passed: whatever the socket is doing, it stops now
        expired.set()
        for sock in opened:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(remaining, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        opened.append(conn.sock)
        if expired.is_set():  # the deadline passed while connecting
            raise _too_slow(first, policy)
        conn.request("GET", t.target, headers={"Host": t.host_header, "User-Agent": USER_AGENT,
                                               "Accept": "image/*", "Accept-Encoding": "identity"},
                     preload_content=False, decode_content=False)  # read below, against the byte cap
        reply = conn.getresponse()
        if reply.status in REDIRECTS:
            location = reply.headers.get("Location")
            if not location:
                raise UrlFetchError(f"{quote(url)} answered HTTP {reply.status} without a Location")
            return location
        if not 200 <= reply.status < 300:
            raise UrlFetchError(f"{quote(url)} answered HTTP {reply.status} {reply.reason or ''}".rstrip())
        return _image_body(reply, url, first, policy, expired)
    except (UrlNotAllowedError, UrlFetchError):
        raise
    except ValueError as exc:  # http.client on a reply that is not HTTP, for one
        raise UrlFetchError(f"cannot fetch {quote(url)}: {exc.__class__.__name__}: {str(exc)[:200]}") from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        if expired.is_set():
            raise _too_slow(first, policy) from None
        raise _failed(exc, t, address, url, first, policy) from None
    finally:
        watchdog.cancel()
        conn.close()


def _failed(exc: BaseException, t: _Target, address: str, url: str, first: str, policy: UrlPolicy):
    """The error that says truthfully why the fetch of one hop failed: refused, unreachable, too slow, hung up.

    urllib3's NewConnectionError is a ConnectTimeoutError (a TimeoutError) whatever the cause, so the
    cause is read from the error it wraps, never from that class."""
    cause = exc
    for _ in range(5):  # the OSError inside urllib3's wrappers
        if isinstance(cause, OSError) or getattr(cause, "__context__", None) is None:
            break
        cause = cause.__context__
    where = f"{t.host}:{t.port}" if t.host == address else f"{t.host}:{t.port} ({address})"
    if isinstance(cause, ConnectionRefusedError):
        return UrlFetchError(f"cannot fetch {quote(url)}: connection refused by {where}: nothing listens there")
    if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return UrlFetchError(f"cannot fetch {quote(url)}: {where} is unreachable from this server")
    if isinstance(cause, (socket.timeout, TimeoutError)) or (
            isinstance(exc, urllib3.exceptions.TimeoutError)
            and not isinstance(exc, urllib3.exceptions.NewConnectionError)):
        return _too_slow(first, policy)
    if isinstance(cause, (ConnectionResetError, BrokenPipeError)) or isinstance(
            exc, (http.client.RemoteDisconnected, urllib3.exceptions.ProtocolError)):
        return UrlFetchError(f"cannot fetch {quote(url)}: {where} closed the connection without a complete answer")
    return UrlFetchError(f"cannot fetch {quote(url)}: {exc.__class__.__name__}: {str(exc)[:200]}")


def _image_body(reply, url: str, first: str, policy: UrlPolicy, expired: threading.Event) -> bytes:
    kind = reply.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if not kind.startswith("image/"):
        raise UrlNotAllowedError(f"url {quote(first)} is not allowed: {quote(url)} is not an image "
                                 f"(Content-Type {quote(kind) if kind else 'missing'}, an image/... type is needed)")
    encoding = reply.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UrlNotAllowedError(f"url {quote(first)} is not allowed: {quote(url)} sent a {quote(encoding)}-"
                                 f"encoded body; images are fetched as they are")
    declared = reply.headers.get("Content-Length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(first, policy, f"declares {int(declared):,} bytes")
    chunks, size = [], 0
    for chunk in reply.stream(64 * 1024, decode_content=False):
        size += len(chunk)
        if size > policy.max_bytes:
            raise _too_large(first, policy, "sent more, and was cut off")
        chunks.append(chunk)
    if expired.is_set():
        raise _too_slow(first, policy)
    return b"".join(chunks)


def _too_large(url: str, policy: UrlPolicy, detail: str) -> UrlNotAllowedError:
    return UrlNotAllowedError(f"url {quote(url)} is not allowed: the image is over the limit of "
                              f"{policy.max_bytes:,} bytes (it {detail})")


def _too_slow(url: str, policy: UrlPolicy) -> UrlNotAllowedError:
    return UrlNotAllowedError(f"url {quote(url)} is not allowed: it was not fetched within the limit of "
                              f"{policy.timeout:g} seconds")

