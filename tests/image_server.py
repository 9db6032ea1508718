"""A small HTTP server on 127.0.0.1 that serves the photos, redirects and misbehaving replies: the far end of
query-by-URL tests (tests/web/test_url_queries.py, tests/browser/test_regions_page.py)."""

from __future__ import annotations

import gzip
import http.server
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


class ImageServer:
    """A small HTTP server on 127.0.0.1 serving the photos, redirects and misbehaving replies."""

    def __init__(self, photos: Path):
        self.requests: list[tuple[str, str]] = []  # (path, Host header) of every request it got
        self.stop = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Host", "")))
                parts = urlsplit(self.path)
                name = parts.path.strip("/")
                if name.startswith("hops/"):
                    left = int(name.split("/")[1])
                    return self._redirect(f"/hops/{left - 1}" if left else "/rocket.jpg")
                if name == "redirect":
                    return self._redirect(parse_qs(parts.query)["to"][0])
                if name == "page.html":
                    return self._send(b"<html>not a picture</html>", "text/html; charset=utf-8")
                if name == "big.jpg":  # declares more than the limit
                    return self._send(b"\xff\xd8" + b"\0" * (3 * 2**20), "image/jpeg")
                if name == "endless.jpg":  # no Content-Length: streams until the client stops reading
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    try:
                        for _ in range(200):
                            self.wfile.write(b"\0" * 65536)
                    except OSError:
                        pass  # the client stopped reading at its limit, as it should
                    return
                if name == "slow.jpg":  # a byte at a time, for ever
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    try:
                        while not owner.stop.wait(0.1):
                            self.wfile.write(b"\0")
                            self.wfile.flush()
                    except OSError:
                        pass  # the client gave up at its deadline
                    return
                if name == "gzip.jpg":
                    data = gzip.compress((photos / "rocket.jpg").read_bytes())
                    return self._send(data, "image/jpeg", {"Content-Encoding": "gzip"})
                if name == "text.jpg":
                    return self._send(b"this is text", "image/jpeg")
                path = photos / name
                if name and path.is_file():
                    return self._send(path.read_bytes(), "image/png" if name.endswith(".png") else "image/jpeg")
                self.send_error(404)

            def _redirect(self, location):
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, data, kind, headers=None):
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the client stopped reading at its limit

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
