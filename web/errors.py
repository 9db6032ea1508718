"""One error contract: JSON ``{"error": {"code", "message"}}`` under /api, an HTML page elsewhere.

An ``ImgsearchError`` gets the HTTP status and code that ``STATUS`` gives its class (the nearest
class in its MRO that the table names); one it does not name is the server's own problem (a
damaged index, a missing package), answered like any other failure: 500, logged, and nothing of
the server's files in the answer.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from imgsearch.search.errors import (
    ChangedFileError,
    DamagedShardError,
    ExternalVectorsError,
    HeadDamagedError,
    HeadError,
    ImageError,
    ImageTooLargeError,
    ImageUnavailableError,
    ImgsearchError,
    InvalidBoxError,
    InvalidFieldError,
    InvalidFilterError,
    InvalidInputError,
    InvalidVectorError,
    NotFoundError,
    TextQueriesUnsupportedError,
    UnknownLabelError,
    UrlFetchError,
    UrlNotAllowedError,
)

log = logging.getLogger(__name__)

# HTTP status -> stable machine-readable code
_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict", 413: "too_large",
          415: "unsupported_media_type", 500: "internal_error", 503: "unavailable"}

# error class -> (HTTP status, code); an error takes the entry of the nearest class in its MRO
STATUS: dict[type[ImgsearchError], tuple[int, str]] = {
    InvalidInputError: (400, "bad_request"),
    InvalidVectorError: (400, "invalid_vector"),
    ExternalVectorsError: (400, "image_queries_unsupported"),
    TextQueriesUnsupportedError: (400, "text_queries_unsupported"),  # no text tower: a CNN, DINOv2  # vectors made elsewhere: query by vector or id
    InvalidBoxError: (400, "invalid_box"),
    UrlNotAllowedError: (400, "url_not_allowed"),  # the SSRF guard's refusals, with the reason
    UrlFetchError: (400, "url_fetch_failed"),  # an allowed URL that could not be fetched
    HeadError: (400, "unknown_head"),  # every head the client names: unknown, or unusable
    HeadDamagedError: (409, "head_damaged"),  # the head exists but its files are damaged: retrain it
    NotFoundError: (404, "not_found"),  # UnknownIdError among them
    ImageError: (400, "invalid_image"),  # an upload that is not an image
    ImageTooLargeError: (413, "image_too_large"),
    ImageUnavailableError: (404, "image_unavailable"),  # an indexed image whose file is gone
    ChangedFileError: (409, "file_changed"),  # ... or holds another picture now: re-index to pick it up
    InvalidFilterError: (400, "invalid_filter"),  # an unknown field or operator, a value of the wrong type
    UnknownLabelError: (400, "unknown_label"),  # the message lists the labels the index has
    # the server's own problem, but a known one with a known scope: the queries reading that shard (logged once)
    DamagedShardError: (503, "shard_damaged"),
}


def status_of(exc: ImgsearchError) -> tuple[int, str] | None:
    """The (HTTP status, code) that ``STATUS`` gives ``exc``'s class, or None for the server's own problems."""
    if isinstance(exc, InvalidFieldError):
        return 400, f"invalid_{exc.field}"  # a query option (k, offset, min_score, ...): the code names it
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return None


class ApiError(ImgsearchError):
    """A request that web itself finds malformed (a missing field, a bad integer); the message says how to fix it."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}  # e.g. Retry-After on a 503, WWW-Authenticate on a 401


def error_of(exc: ImgsearchError) -> tuple[int, str, str] | None:
    """(HTTP status, code, message) of an error ``STATUS`` names, as a response would carry them; None for
    the server's own problems (logged, answered 500 ``internal_error``)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.message
    mapped = status_of(exc)
    return None if mapped is None else (*mapped, public_message(exc)[:MAX_MESSAGE])


def public_message(exc: ImgsearchError) -> str:
    """What a client is told of ``exc``: its message, but of a damaged shard only its name (not the server's
    paths); the first time a shard is found damaged, the whole message goes to the log (once, no traceback)."""
    if not isinstance(exc, DamagedShardError):
        return str(exc)
    logged = current_app.extensions.setdefault("imgsearch_damaged_logged", set())
    if exc.shard not in logged:
        logged.add(exc.shard)
        log.error("%s (answering 503 shard_damaged to the queries that read it; GET /api/health says degraded)",
                  exc)
    return (f"shard {exc.shard} of the index is damaged: this query reads it and cannot be answered until the "
            "index is repaired ('imgsearch verify --repair'); queries that do not read it are answered")


GENERIC = "internal server error; the server log has the details"  # all a client learns of a 500
MAX_MESSAGE = 2000  # characters: messages quote at most ~200 of a caller's value (quote()); this is the backstop


def _respond(status: int, code: str, message: str, headers: dict | None = None):
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + " ..."
    if request.path.startswith("/api/"):
        return jsonify(error={"code": code, "message": message}), status, headers or {}
    return render_template("error.html", status=status, message=message), status, headers or {}


def megabytes(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n % (1024 * 1024) == 0 else f"{n / (1024 * 1024):.2f} MB"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return _respond(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(ImgsearchError)
    def imgsearch_error(exc: ImgsearchError):
        mapped = status_of(exc)
        if mapped is None:
            return unexpected(exc)
        return _respond(*mapped, public_message(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            if limit and (request.content_length is None or request.content_length > limit):
                message = f"upload too large: the limit is {megabytes(limit)}"
            else:  # Werkzeug's form limits: a text field over MAX_FORM_MEMORY_SIZE, or too many parts
                message = (f"form too large: text fields may hold at most {app.config['MAX_FORM_MEMORY_SIZE']} "
                           f"bytes and a form at most {app.config['MAX_FORM_PARTS']} parts")
        # a 405 says which methods the URL takes, as HTTP requires
        allow = {"Allow": ", ".join(sorted(exc.valid_methods))} if getattr(exc, "valid_methods", None) else None
        return _respond(status, _CODES.get(status, "http_error"), message, allow)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _respond(500, "internal_error", GENERIC)
