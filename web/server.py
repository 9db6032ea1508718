"""The production server: waitress with limits chosen on purpose, and the JSON error contract on its own errors.

waitress's defaults suit a server behind a proxy on a private network, not
one that faces clients directly: 100 connections in all (about 100 idle
sockets took ``imgsearch serve`` offline for two minutes), 120 s before an
idle connection is closed, a 1 GB request body spooled to disk before the
application can refuse it, and ``select()``, which cannot watch more than
1,024 sockets.  The settings here (the app's config, ``imgsearch serve``
options) are:

- ``CONNECTION_LIMIT`` (1,000) connections, watched with ``poll()``; the
  process's open-file limit is raised to fit them where the hard limit allows;
- ``CHANNEL_TIMEOUT`` (30 s): an idle or trickling connection is closed after
  that long without progress, checked every few seconds;
- request bodies are refused on their declared Content-Length, before one
  byte of them is read, when they exceed ``MAX_CONTENT_LENGTH`` (plus room
  for the multipart framing), and no ``100 Continue`` is sent for them;
- errors waitress answers itself (a malformed request, a bad Content-Length,
  an unsupported Transfer-Encoding, a body too large) follow the JSON
  contract ``{"error": {"code", "message"}}`` under /api/, like the
  application's own.  One stays plain text: 431 for headers over 256 KB,
  since waitress drops the request line of such a request and so cannot
  tell /api/ from a page.

Behind a reverse proxy (nginx, Caddy) let the proxy hold client connections
and buffer uploads, and point it at this server on loopback.
"""

from __future__ import annotations

import json
import logging
import resource

import waitress
from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from imgsearch.web.errors import megabytes

log = logging.getLogger(__name__)

MULTIPART_MARGIN = 64 * 1024  # a form's boundaries and part headers around an upload of MAX_CONTENT_LENGTH
CLEANUP_INTERVAL = 5  # seconds between waitress's checks for connections past their CHANNEL_TIMEOUT

_CODES = {400: "bad_request", 413: "too_large", 501: "not_implemented"}


class JSONErrorTask(ErrorTask):
    """waitress's own error responses, as JSON under /api/ (plain text elsewhere, as before)."""

    def execute(self):
        path = getattr(self.request, "path", "") or ""
        if not path.startswith("/api/"):
            return super().execute()
        error = self.request.error
        message = f"{error.reason}: {str(error.body)[:200]}"
        limit = getattr(self.channel.server, "max_content_length", None)
        if error.code == 413 and limit:  # the same words as the app's own 413 (web/errors.py)
            message = f"upload too large: the limit is {megabytes(limit)}"
        body = json.dumps({"error": {"code": _CODES.get(error.code, "http_error"), "message": message}}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class LimitedChannel(HTTPChannel):
    error_task_class = JSONErrorTask

    def send_continue(self):
        # a request already refused (a declared body over the limit) must not be told to send its body
        if self.request is not None and self.request.error is not None:
            self.request.expect_continue = False
            return
        super().send_continue()


def _raise_open_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.info("open-file limit raised from %d to %d for %s connections", soft, target, wanted)
    if target < wanted:
        log.warning("the open-file limit (%d) is below CONNECTION_LIMIT + 256 (%d): raise it (ulimit -n)",
                    target, wanted)


def make_server(app, host: str = "127.0.0.1", port: int = 8000):
    """A waitress server for ``app``, bound to host:port now (OSError if the port is taken).

    Call ``.run()`` to serve and ``.close()`` to stop; ``.effective_port`` is the bound port.
    """
    cfg = app.config
    _raise_open_file_limit(cfg["CONNECTION_LIMIT"] + 256)
    server = waitress.create_server(
        app, host=host, port=port, threads=cfg["SERVER_THREADS"], connection_limit=cfg["CONNECTION_LIMIT"],
        channel_timeout=cfg["CHANNEL_TIMEOUT"], cleanup_interval=min(CLEANUP_INTERVAL, cfg["CHANNEL_TIMEOUT"]),
        max_request_body_size=cfg["MAX_CONTENT_LENGTH"] + MULTIPART_MARGIN, asyncore_use_poll=True,
        clear_untrusted_proxy_headers=True)
    server.channel_class = LimitedChannel
    app.config["BOUND_HOST"] = host  # who can reach it decides whether it may train heads (web/heads_api.py)
    server.max_content_length = cfg["MAX_CONTENT_LENGTH"]  # for JSONErrorTask's 413 message
    return server


def port_in_use(host: str, port: int) -> None:
    """Raise OSError if ``host:port`` cannot be bound now (for servers that bind later themselves)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
