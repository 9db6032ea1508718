"""One error contract: JSON ``{"error": {"code", "message"}}`` under /api, an HTML page elsewhere."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# HTTP status -> stable machine-readable code
_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large",
          415: "unsupported_media_type", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    """An error the client can fix; the message says how."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _respond(status: int, code: str, message: str):
    if request.path.startswith("/api/"):
        return jsonify(error={"code": code, "message": message}), status
    return render_template("error.html", status=status, message=message), status


def _megabytes(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n % (1024 * 1024) == 0 else f"{n / (1024 * 1024):.2f} MB"


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return _respond(exc.status, exc.code, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            if limit and (request.content_length is None or request.content_length > limit):
                message = f"upload too large: the limit is {_megabytes(limit)}"
            else:  # Werkzeug's form limits: a text field over MAX_FORM_MEMORY_SIZE, or too many parts
                message = (f"form too large: text fields may hold at most {app.config['MAX_FORM_MEMORY_SIZE']} "
                           f"bytes and a form at most {app.config['MAX_FORM_PARTS']} parts")
        return _respond(status, _CODES.get(status, "http_error"), message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _respond(500, "internal_error", "internal server error; the server log has the details")
