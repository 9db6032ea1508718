"""Who may reach the server by which name, and which other sites' pages may post to it.

**Host.** A page on another site can reach a server on this machine through DNS
rebinding: its name, evil.example, first resolves to the attacker's server and
then to 127.0.0.1, and the browser, which thinks it still talks to evil.example,
sends that name in the ``Host`` header.  So every request (API, page, static
files) must name a host the server is known by: ``localhost``, ``127.0.0.1`` and
``[::1]`` always; the address it is bound to when that is one address (not
``0.0.0.0`` or ``::``); and the names in ``ALLOWED_HOSTS`` (``--allowed-host``;
``*`` allows any).  The port, a trailing dot and letter case are ignored.
Another name gets 400 ``host_not_allowed``.  A request without ``Host`` (HTTP/1.0
tools) names none and is let through: browsers always send it.

**Origin.** A state-changing or data-revealing request is a POST, PUT, PATCH or
DELETE (query-by-image POSTs included: their answers show the index).  One
whose ``Origin`` is not the server's own (the same ``host[:port]`` as its
``Host``) nor in ``ALLOWED_ORIGINS`` (``--allowed-origin``), or that a browser
marks ``Sec-Fetch-Site: cross-site``, gets 403 ``cross_origin``.  Clients that
send no ``Origin`` (the Python client, curl) are not browsers' pages and pass.
An allowed origin also gets the CORS headers that let its page read the answers
(and its preflight answered); other origins get none, so they cannot read even
what a GET returns.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from flask import Flask, current_app, request

from imgsearch.search.errors import InvalidInputError, quote
from imgsearch.web.errors import ApiError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")
STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,62})(\.[a-z0-9_]([a-z0-9_-]{0,62}))*$")
_CORS_METHODS = "GET, POST, DELETE"
_CORS_HEADERS = "Authorization, Content-Type"


def host_name(host: str) -> str | None:
    """The name a ``Host`` header gives (lower case, no port, no trailing dot, IPv6 unbracketed), or None
    when it is not a well-formed ``name[:port]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        name, rest = host[1:end], host[end + 1:]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, _, port = host.partition(":")
        rest = f":{port}" if _ else ""
        name = name.rstrip(".") if name.endswith(".") and not name.endswith("..") else name
        if not _NAME.match(name):
            return None
    if rest and not (rest.startswith(":") and rest[1:].isdigit() and len(rest) <= 6):
        return None
    return name


def _name_setting(value) -> str:
    """One ``ALLOWED_HOSTS`` entry as a name, or InvalidInputError saying how to write it."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if text == "*":
        return text
    name = host_name(text) if text else None
    if name is None or name != text.strip("[]").rstrip("."):  # not a name, or with a port
        raise InvalidInputError(f"ALLOWED_HOSTS: {quote(value)} is not a host name: write it without a port or "
                                "scheme, as pics.example or 192.0.2.7 or [2001:db8::1] (--allowed-host)")
    return name


def _origin_setting(value) -> str:
    parts = urlsplit(value.strip()) if isinstance(value, str) else None
    try:
        ok = (parts is not None and parts.scheme in ("http", "https") and parts.hostname
              and parts.path in ("", "/") and not parts.query and not parts.fragment and parts.username is None
              and (parts.port or 0) >= 0)
    except ValueError:
        ok = False
    if not ok:
        raise InvalidInputError(f"ALLOWED_ORIGINS: {quote(value)} is not an origin: write scheme, host and port "
                                "only, as https://front.example or http://localhost:3000 (--allowed-origin)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def install_host_checks(app: Flask) -> None:
    """Check ``ALLOWED_HOSTS`` and ``ALLOWED_ORIGINS`` and refuse requests as the module docstring says."""
    for setting in ("ALLOWED_HOSTS", "ALLOWED_ORIGINS"):
        if not isinstance(app.config[setting], (list, tuple)):
            raise InvalidInputError(f"{setting} must be a list of strings, got {quote(app.config[setting])}")
    app.config["ALLOWED_HOSTS"] = tuple(_name_setting(h) for h in app.config["ALLOWED_HOSTS"])
    app.config["ALLOWED_ORIGINS"] = tuple(_origin_setting(o) for o in app.config["ALLOWED_ORIGINS"])
    app.before_request(_check_request)
    app.after_request(_cors_headers)


def allowed_host(host: str, allowed: tuple, bound: str | None) -> bool:
    """Whether a ``Host`` header names this server (see the module docstring)."""
    if "*" in allowed:
        return True
    name = host_name(host)
    if name is None:
        return False
    if name in LOOPBACK_NAMES or name in allowed:
        return True
    return bound is not None and bound.strip("[]").lower() not in WILDCARDS and name == bound.strip("[]").lower()


def _check_request():
    config = current_app.config
    host = request.environ.get("HTTP_HOST")
    if host is not None and not allowed_host(host, config["ALLOWED_HOSTS"], config.get("BOUND_HOST")):
        raise ApiError(400, "host_not_allowed", f"this server is not known as {quote(host, 60)}: reach it by one of "
                                                f"{', '.join(_known_names())}, or start it with --allowed-host NAME "
                                                "(ALLOWED_HOSTS) for the names its users type")
    if request.method == "OPTIONS" and _allowed_origin() is not None:
        return current_app.response_class(status=204)  # a preflight from an allowed origin: _cors_headers answers
    if request.method in STATE_CHANGING:
        origin = request.headers.get("Origin")
        if origin is not None and not _same_origin(origin, host) and _allowed_origin() is None:
            raise ApiError(403, "cross_origin", f"requests that change or search the index are not taken from "
                                                f"another site's page (Origin {quote(origin, 80)}); start the server "
                                                "with --allowed-origin ORIGIN (ALLOWED_ORIGINS) to trust one")
        if origin is None and request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            raise ApiError(403, "cross_origin", "requests that change or search the index are not taken from "
                                                "another site's page (Sec-Fetch-Site: cross-site)")
    return None


def _known_names() -> list[str]:
    bound = (current_app.config.get("BOUND_HOST") or "").strip("[]").lower()
    names = ["localhost", "127.0.0.1", "[::1]", *current_app.config["ALLOWED_HOSTS"]]
    if bound not in WILDCARDS and bound not in LOOPBACK_NAMES:
        names.append(f"[{bound}]" if ":" in bound else bound)
    return names


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether ``Origin`` is this page's own: a browser writes both from one URL, default ports left out."""
    try:
        parts = urlsplit(origin.strip())
        return (host is not None and parts.scheme in ("http", "https") and not parts.path
                and parts.username is None and parts.netloc.lower() == host.strip().lower())
    except ValueError:
        return False


def _allowed_origin() -> str | None:
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    origin = origin.strip().lower()
    return origin if origin in current_app.config["ALLOWED_ORIGINS"] else None


def _cors_headers(response):
    origin = _allowed_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = request.headers["Origin"].strip()
        response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Expose-Headers"] = "Retry-After, WWW-Authenticate"
        response.headers["Access-Control-Max-Age"] = "600"
    response.vary.add("Origin")
    return response
