"""Security headers on every response: page, static files, API and errors alike."""

from __future__ import annotations

from flask import Flask

# Only the app's own scripts, styles, images and API; no inline code. The one exception is the
# query preview, a blob: URL the page makes from the file the user picked, dropped or pasted.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "img-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",  # a JSON error or a JPEG is never run as HTML or script
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def add_security_headers(app: Flask) -> None:
    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response
