"""Query images fetched from URLs for the API: a few fetches at once, one deadline per request.

A remote server that trickles its bytes holds the request thread that fetches from it for the
whole ``URL_QUERY_TIMEOUT``.  So at most ``MAX_URL_FETCHES`` fetches run at once (default a
quarter of ``SERVER_THREADS``): one more is refused at once with 503 ``busy`` and a Retry-After,
rather than waiting for a slot, and the other threads stay free for health, uploads and vectors.
Every fetch of one request (a batch may hold many URLs) shares one deadline, the request's first
fetch's start plus ``URL_QUERY_TIMEOUT``, so a batch holds its thread no longer than one query.
"""

from __future__ import annotations

import math
import threading
import time

from flask import Flask, current_app, g

from imgsearch.search.errors import InvalidInputError, quote
from imgsearch.search.query.remote import fetch_image
from imgsearch.web.errors import ApiError


def default_max_fetches(threads: int) -> int:
    return max(1, threads // 4)


def install_url_fetches(app: Flask) -> None:
    """Check ``MAX_URL_FETCHES`` (None: a quarter of ``SERVER_THREADS``) and give the app its fetch slots."""
    cap = app.config.get("MAX_URL_FETCHES")
    if cap is None:
        cap = app.config["MAX_URL_FETCHES"] = default_max_fetches(app.config["SERVER_THREADS"])
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise InvalidInputError(f"MAX_URL_FETCHES must be a whole number >= 1 (or None: a quarter of "
                                f"SERVER_THREADS), got {quote(cap)}")
    app.extensions["imgsearch_url_slots"] = threading.BoundedSemaphore(cap)


def fetch_query_image(url: str) -> bytes:
    """The image at ``url`` for this request, or 503 busy when ``MAX_URL_FETCHES`` fetches are running."""
    policy = current_app.extensions["imgsearch_url_policy"]
    if "url_deadline" not in g:
        g.url_deadline = time.monotonic() + policy.timeout
    slots = current_app.extensions["imgsearch_url_slots"]
    if not slots.acquire(blocking=False):
        cap = current_app.config["MAX_URL_FETCHES"]
        raise ApiError(503, "busy", f"the server is fetching {cap} query image URL{'s' if cap > 1 else ''} already "
                                    "(its MAX_URL_FETCHES limit): retry later, or upload the image",
                       headers={"Retry-After": str(max(1, math.ceil(policy.timeout)))})
    try:
        return fetch_image(url, policy, deadline=g.url_deadline)
    finally:
        slots.release()
