"""Web hardening: security headers, ids that never become paths, hostile JSON and forms,
no debug mode and no traceback in any answer."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from imgsearch.web.security import CONTENT_SECURITY_POLICY
from tests.helpers import fake_model_env
from tests.pixel_model import DIM

pytestmark = pytest.mark.timeout(60)

HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def _raw_get(url: str, path: str) -> tuple[int, dict, bytes]:
    """GET ``path`` exactly as written: requests would resolve '..' segments before sending."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 200),
    ("GET", "/static/app.js", 200),
    ("GET", "/static/app.css", 200),
    ("GET", "/api/info", 200),
    ("GET", "/api/images/0?size=64", 200),
    ("GET", "/api/images/999999", 404),
    ("GET", "/no-such-page", 404),
    ("POST", "/api/search", 400),
])
def test_security_headers_on_every_kind_of_response(live_server, method, path, status):
    r = requests.request(method, live_server.url + path, timeout=30)
    assert r.status_code == status
    for name, value in HEADERS.items():
        assert r.headers.get(name) == value, (name, r.headers)
    csp = r.headers["Content-Security-Policy"]
    assert csp == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "*" not in csp


PASSWD = b"root:x:0:0"


@pytest.mark.parametrize("path", [
    "/api/images/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/images/..%252F..%252Fetc%252Fpasswd",  # encoded twice
    "/api/images/%2Fetc%2Fpasswd",
    "/api/images//etc/passwd",
    "/api/images/../../../../etc/passwd",
    "/api/images/0/../../../../etc/passwd",
    "/api/images/0%2F..%2F..%2Fetc%2Fpasswd",
    "/api/images/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/api/images/..\\..\\etc\\passwd",
    "/api/images/file:%2F%2F%2Fetc%2Fpasswd",
    "/api/images/-1",
    "/api/images/-0",
    "/api/images/99999999999999999999999999999999999999",
    "/api/images/" + "9" * 5000,
    "/api/images/1e3",
    "/api/images/0x1",
    "/api/images/%00",
    "/api/images/0%00",
    "/api/images/0?size=-1",
    "/api/images/0?size=99999999999999999999999",
    "/api/images/0?size=/etc/passwd",
    "/static/../../../../../../etc/passwd",
    "/static/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static//etc/passwd",
    "/..%2F..%2F..%2Fetc%2Fpasswd",
])
def test_paths_and_ids_never_reach_files_outside_the_index(live_server, path):
    status, headers, body = _raw_get(live_server.url, path)
    if status == 308:  # Werkzeug merges repeated slashes by redirecting: follow it, inside this server
        location = urlsplit(headers["Location"])
        assert location.netloc in ("", urlsplit(live_server.url).netloc)
        status, headers, body = _raw_get(live_server.url, location.path)
    assert status in (400, 404), (status, body[:200])
    assert PASSWD not in body
    assert not headers.get("Content-Type", "").startswith("image/")
    assert b"Traceback" not in body


def test_an_indexed_path_is_not_an_id(live_server, built_index, corpus):
    """The file behind id 0 is served by its id, never by its path."""
    from imgsearch.search.engine import SearchEngine

    path = SearchEngine.open(built_index[0]).get(0).path
    for quoted in (quote(path, safe="/"), quote(path, safe="")):
        status, _, body = _raw_get(live_server.url, "/api/images/" + quoted)
        assert status == 404 and body.startswith(b'{"error"')
    assert requests.get(live_server.url + "/api/images/0", timeout=30).status_code == 200


@pytest.mark.parametrize("body, status, code, message", [
    ({"id": -1}, 400, "invalid_id", "id must be an integer between 0 and 9223372036854775807, got -1"),
    ({"id": 10 ** 30}, 400, "invalid_json", "beyond 64 bits"),
    ({"id": "../../etc/passwd"}, 400, "invalid_id", "integer"),
    ({"id": "/etc/passwd"}, 400, "invalid_id", "integer"),
    ({"id": 0, "head": "../../../etc"}, 400, "unknown_head", "no head named"),
    ({"id": 0, "head": "/etc/passwd"}, 400, "unknown_head", "no head named"),
    ({"vector": [10 ** 400] * DIM}, 400, "invalid_json", "beyond 64 bits"),
    ({"vector": [1e39] * DIM}, 200, None, None),  # beyond float32, but a direction: scaled, never overflowed
    ({"vector": [0.0] * DIM, "k": 3}, 400, "invalid_vector", "all zeros"),  # no direction: never arbitrary hits
])
def test_hostile_json_fields(live_server, body, status, code, message):
    r = requests.post(live_server.url + "/api/search", json=body, timeout=30)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["error"]["code"] == code and message in r.json()["error"]["message"]


@pytest.mark.parametrize("text", [
    "[" * 100_000 + "]" * 100_000,
    '{"id": ' * 50_000 + "0" + "}" * 50_000,
    '{"id": 0, "k": ' + "[" * 100_000 + "]" * 100_000 + "}",
])
def test_deeply_nested_json_is_400_not_500(live_server, text):
    r = requests.post(live_server.url + "/api/search", data=text, timeout=30,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == {"code": "invalid_json", "message": "the JSON body is nested too deeply"}


def test_form_limits_are_413_with_their_own_message(live_server, corpus):
    image = (corpus / "photos" / "rocket.jpg").read_bytes()
    r = requests.post(live_server.url + "/api/search", files={"image": ("r.jpg", image)},
                      data={"k": "1" * 600_000}, timeout=30)  # a text field over Werkzeug's 500 KB
    assert r.status_code == 413
    assert r.json()["error"]["message"].startswith("form too large: text fields may hold at most 500000 bytes")
    parts = [("f%d" % i, "1") for i in range(1100)]  # over Werkzeug's 1,000 parts
    r = requests.post(live_server.url + "/api/search", files={"image": ("r.jpg", image)}, data=parts, timeout=30)
    assert r.status_code == 413 and "1000 parts" in r.json()["error"]["message"]


# ---------------------------------------------------------------- no debug, no traceback


def test_create_app_has_debug_off_even_with_flask_debug_set(monkeypatch, built_index):
    from flask import Flask

    from imgsearch.web import create_app

    monkeypatch.setenv("FLASK_DEBUG", "1")
    monkeypatch.setenv("IMGSEARCH_INDEX", str(built_index[0]))
    assert Flask("control").debug is True  # what FLASK_DEBUG alone does to a Flask app
    app = create_app()  # the production entry point: waitress-serve --call web:create_app
    assert app.debug is False and app.config["DEBUG"] is False


def _failing_app(live_server):
    from imgsearch.web import create_app

    app = create_app({"WARM_UP": False}, engine=live_server.app.extensions["imgsearch"])

    def boom():
        raise RuntimeError("secret detail: /etc/shadow and the password hunter2")

    app.add_url_rule("/api/boom", "api_boom", boom)
    app.add_url_rule("/boom", "boom", boom)
    return app


def test_errors_never_leak_a_traceback(live_server, caplog):
    client = _failing_app(live_server).test_client()
    r = client.get("/api/boom")
    assert r.status_code == 500
    assert r.get_json() == {"error": {"code": "internal_error",
                                      "message": "internal server error; the server log has the details"}}
    r = client.get("/boom")
    assert r.status_code == 500 and r.mimetype == "text/html"
    for text in (r.get_data(as_text=True), client.get("/api/boom").get_data(as_text=True)):
        for leak in ("Traceback", "RuntimeError", "hunter2", "/etc/shadow", ".py"):
            assert leak not in text
    assert "hunter2" in caplog.text  # the details go to the server log
    assert r.headers["X-Content-Type-Options"] == "nosniff"  # error pages get the headers too


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_serve_command_runs_waitress_without_debug(built_index):
    """`imgsearch serve` (no --dev) with FLASK_DEBUG=1 in its environment still serves without debug."""
    port = _free_port()
    imgsearch = Path(sys.executable).with_name("imgsearch")
    env = fake_model_env(FLASK_DEBUG="1")
    proc = subprocess.Popen([str(imgsearch), "-v", "serve", "--index", str(built_index[0]), "--port", str(port),
                             "--threads", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                r = requests.get(url + "/api/info", timeout=5)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "the server did not start in 90 s"
                time.sleep(0.2)
        assert r.status_code == 200 and r.headers["Server"] == "waitress"
        assert "\n" not in r.text.strip()  # Flask indents JSON in debug mode only
        assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        r = requests.post(url + "/api/search", data="{", headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 400 and "Traceback" not in r.text
        json.loads(r.text)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "debug off" in stderr and "debug on" not in stderr
