"""Who may read and who may write, by API key (``Authorization: Bearer isk_...``; keys: web/keys.py).

- A request that writes (teaching or deleting a head, marking or removing duplicates: every POST, PUT, PATCH
  or DELETE under /api except the searches, classify and explain, which only
  read) needs a ``write`` key whenever the server is not bound to loopback
  (``BOUND_HOST``; unknown counts as not loopback): none gets 401
  ``key_required``, a ``read`` key 403 ``write_scope_required``.
- ``REQUIRE_KEY`` (``serve --require-key``): every /api request but
  ``/api/health`` needs a key, read or write, and writes a write key, on
  loopback too.
- On loopback without ``REQUIRE_KEY`` nobody needs a key, as before (only this
  machine reaches the server; web/hosts.py keeps other sites' pages out).
- A key that is sent is always checked: an unknown or revoked one gets 401
  ``bad_key``, whatever the rules above would have asked.  Every 401 carries
  ``WWW-Authenticate: Bearer``.

Every write that succeeds is logged with the name of the key that made it.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from flask import Flask, current_app, g, request

from imgsearch.search.errors import InvalidInputError
from imgsearch.web.errors import ApiError
from imgsearch.web.keys import KeyStore

log = logging.getLogger(__name__)
audit = logging.getLogger("imgsearch.web.audit")  # one line per write; imgsearch serve shows it (INFO)

READS = ("GET", "HEAD", "OPTIONS")
# POSTs (and a DELETE) that change nothing in the index: searches, and duplicates jobs (web/duplicates_jobs.py)
READ_POSTS = {"api.search", "api.classify", "batch.search_batch", "explain.explain", "duplicates_jobs.start",
              "duplicates_jobs.cancel"}
OPEN = {"api.health"}  # answered without a key, even with REQUIRE_KEY: load balancers ask it


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def install_keys(app: Flask) -> None:
    """The app's key store (``KEYS_FILE``, checked here) and the check of every /api request."""
    store = KeyStore(app.config["KEYS_FILE"])
    index_dir = app.config.get("INDEX_DIR") or os.environ.get("IMGSEARCH_INDEX")
    if index_dir and store.path.resolve().is_relative_to(os.path.realpath(index_dir)):
        raise InvalidInputError(f"the keys file {store.path} is inside the index folder {index_dir}: keep it outside "
                                "(the default is ~/.config/imgsearch/keys.json), where copies of the index do not "
                                "take it along")
    if not isinstance(app.config["REQUIRE_KEY"], bool):
        raise InvalidInputError(f"REQUIRE_KEY must be True or False, got {app.config['REQUIRE_KEY']!r}")
    if app.config.get("ALLOW_TRAINING") is not None:
        raise InvalidInputError("ALLOW_TRAINING is gone: off loopback, teaching and deleting heads need a write key "
                                "(imgsearch keys create --scope write); on loopback they are allowed")
    keys = store.keys()  # a damaged file fails the start, not the first request
    if app.config["REQUIRE_KEY"] and not keys:
        raise InvalidInputError(f"REQUIRE_KEY (--require-key) with no keys in {store.path}: create one first with "
                                "imgsearch keys create --scope read (or write)")
    app.extensions["imgsearch_keys"] = store
    app.before_request(_check_key)
    app.after_request(_log_write)


def is_write() -> bool:
    return request.method not in READS and request.endpoint not in READ_POSTS


def write_permission() -> tuple[bool, str]:
    """(allowed, why) for this request to write (heads, duplicate marks, removals), from the server's rules and its key."""
    key = g.get("api_key")
    config = current_app.config
    if key is not None:
        if key.scope == "write":
            return True, f"the key {key.name!r} has write scope"
        return False, f"the key {key.name!r} is read-only: writes need a write key"
    if config["REQUIRE_KEY"]:
        return False, "this server requires a key, and writes a write key (imgsearch keys create --scope write)"
    host = config.get("BOUND_HOST")
    if is_loopback(host):
        return True, f"the server is bound to loopback ({host}): only this machine reaches it"
    where = f"listens on {host}, beyond this machine" if host else "address is not known (not started by imgsearch serve)"
    return False, (f"the server {where}: writes (teaching and deleting heads, marking duplicates, removing them "
                   "from the index) need a write key "
                   "(Authorization: Bearer KEY; imgsearch keys create --scope write)")


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": 'Bearer realm="imgsearch"'})


def _presented() -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("bad_key", "the Authorization header must be 'Bearer KEY', with a key from "
                                       "imgsearch keys create")
    return token.strip()


def _check_key():
    if not request.path.startswith("/api/") or request.method == "OPTIONS" or request.endpoint in OPEN:
        return None
    store: KeyStore = current_app.extensions["imgsearch_keys"]
    token = _presented()
    if token is not None:
        try:
            key = store.check(token)
        except InvalidInputError:
            log.exception("the keys file is unreadable: every key is refused until it is fixed")
            key = None
        if key is None:
            raise _unauthorized("bad_key", "this key is not known to the server (mistyped, or revoked): ask for a "
                                           "new one (imgsearch keys create)")
        g.api_key = key
    write = is_write()
    if not write and not current_app.config["REQUIRE_KEY"]:
        return None
    allowed, why = write_permission()
    if write and not allowed:
        if g.get("api_key") is not None:
            raise ApiError(403, "write_scope_required", why)
        raise _unauthorized("key_required", why)
    if not write and g.get("api_key") is None:
        raise _unauthorized("key_required", "this server requires an API key: send Authorization: Bearer KEY "
                                            "(imgsearch keys create --scope read)")
    return None


def _log_write(response):
    if request.path.startswith("/api/") and is_write() and response.status_code < 400:
        key = g.get("api_key")
        audit.info("write %s %s by %s: %d", request.method, request.path,
                    f"key {key.name!r}" if key is not None else "no key (loopback)", response.status_code)
    return response
