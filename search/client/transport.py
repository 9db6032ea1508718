"""HTTP for the client: every call bounded in total time and reply size, every failure one exception.

requests' timeouts are per socket operation: a server that trickles a byte
every second never trips a 3 s read timeout.  A watchdog therefore shuts the
call's socket down when its total ``deadline`` passes, whatever phase it is
in (connecting aside, which the connect timeout bounds), and the reply is
read in chunks against ``max_bytes``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

from imgsearch.indexer.errors import ImgsearchError

_calls = threading.local()  # the call this thread is making, so the pool can tell it its connection


class TransportError(ImgsearchError):
    """The call failed before a complete reply arrived; ``code`` says how."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict
    body: bytes


class _Call:
    """One request's connection, for the watchdog to shut down."""

    def __init__(self):
        self.conn = None
        self.expired = False
        self._lock = threading.Lock()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = getattr(self.conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
            except OSError:
                pass


class _TrackingMixin:
    def _get_conn(self, timeout=None):
        conn = super()._get_conn(timeout)
        call = getattr(_calls, "current", None)
        if call is not None:
            call.conn = conn
        return conn


class _TrackingHTTPPool(_TrackingMixin, HTTPConnectionPool):
    pass


class _TrackingHTTPSPool(_TrackingMixin, HTTPSConnectionPool):
    pass


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose pools report the connection each call uses."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _TrackingHTTPPool, "https": _TrackingHTTPSPool}


def check_base_url(base_url) -> str:
    """An ``http(s)://host[:port][/prefix]`` URL without its trailing slash, or TransportError."""
    if not isinstance(base_url, str):
        raise TransportError("invalid_url", f"the server URL must be a string, got {type(base_url).__name__}")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TransportError("invalid_url", f"the server URL must look like http://host:port, got {base_url[:200]!r}")
    return base_url.strip().rstrip("/")


def session_with_deadlines(session: requests.Session | None = None) -> requests.Session:
    session = session or requests.Session()
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def fetch(session: requests.Session, method: str, url: str, *, timeout, deadline: float, max_bytes: int,
          **kwargs) -> Reply:
    """One HTTP call, done within ``deadline`` seconds with at most ``max_bytes`` of reply body."""
    call = _Call()
    watchdog = threading.Timer(deadline, call.expire)
    watchdog.daemon = True
    started = time.monotonic()
    _calls.current = call
    watchdog.start()
    try:
        with session.request(method, url, timeout=timeout, stream=True, **kwargs) as r:
            declared = r.headers.get("Content-Length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
                raise TransportError("response_too_large", f"{url} sent a reply of {int(declared):,} bytes, "
                                                           f"over the client's limit of {max_bytes:,}")
            chunks, size = [], 0
            for chunk in r.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise TransportError("response_too_large",
                                         f"{url} sent more than the client's limit of {max_bytes:,} bytes")
                chunks.append(chunk)
                if call.expired:
                    break
            if call.expired:
                raise _expired(method, url, deadline)
            return Reply(r.status_code, r.reason or "", dict(r.headers), b"".join(chunks))
    except TransportError:
        raise
    except requests.Timeout as exc:
        raise TransportError("timeout", f"{method} {url} timed out ({exc.__class__.__name__}, "
                                        f"after {time.monotonic() - started:.1f}s)") from exc
    except (requests.RequestException, OSError) as exc:
        if call.expired:
            raise _expired(method, url, deadline) from exc
        if _never_connected(exc):
            raise TransportError("unreachable", f"cannot connect to {url}: {exc}") from exc
        raise TransportError("bad_response", f"{method} {url}: the reply was broken off or malformed "
                                             f"({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    finally:
        watchdog.cancel()
        _calls.current = None


def _never_connected(exc: BaseException) -> bool:
    """Whether requests failed to open a connection at all (rather than got a broken reply)."""
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError -> the error of the last try
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def _expired(method: str, url: str, deadline: float) -> TransportError:
    return TransportError("timeout", f"{method} {url} did not complete within its deadline of {deadline:g}s")
