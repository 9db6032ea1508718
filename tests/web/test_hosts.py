"""Host and Origin checks: a server answers only to the names it is known by (loopback names, its bound address,
``--allowed-host``), so a page on another site cannot reach it by DNS rebinding; and it refuses state-changing
requests from another site's page (``Origin``, ``Sec-Fetch-Site``), unless that origin is allowed."""

from __future__ import annotations

import http.client
import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import LiveServer

pytestmark = pytest.mark.timeout(120)


def _raw(server, method: str, path: str, headers: dict, body: bytes | None = None):
    """A request with exactly these headers (Host included), through a real socket."""
    conn = http.client.HTTPConnection("127.0.0.1", server.server.effective_port, timeout=60)
    try:
        conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data
    finally:
        conn.close()


@pytest.fixture(scope="module")
def headed_server(headed_index, tmp_path_factory):
    """A server on 127.0.0.1 over a copy of the index with head 'cat' (deleting it must be possible)."""
    from imgsearch.web import create_app

    folder = tmp_path_factory.mktemp("hosts") / "idx"
    shutil.copytree(headed_index, folder)
    server = LiveServer(create_app({"INDEX_DIR": str(folder), "WARM_UP": False}))
    yield server
    server.close()


@pytest.fixture(scope="module")
def named_server(live_server):
    """A server that is also known as pics.example, and lets https://front.example post to it."""
    from imgsearch.web import create_app

    app = create_app({"ALLOWED_HOSTS": ("pics.example",), "ALLOWED_ORIGINS": ("https://front.example",)},
                     engine=live_server.app.extensions["imgsearch"])
    server = LiveServer(app)
    yield server
    server.close()


def test_dns_rebinding_cannot_delete_a_head(headed_server):
    port = headed_server.server.effective_port
    status, _, body = _raw(headed_server, "DELETE", "/api/heads/cat", {"Host": f"evil.example:{port}"})
    assert status == 400, body
    assert json.loads(body)["error"]["code"] == "host_not_allowed"
    assert "evil.example" in json.loads(body)["error"]["message"] and "--allowed-host" in json.loads(body)["error"][
        "message"]
    status, _, body = _raw(headed_server, "GET", "/api/heads/cat", {"Host": f"127.0.0.1:{port}"})
    assert status == 200, body  # still there
    status, _, body = _raw(headed_server, "DELETE", "/api/heads/cat",
                           {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})
    assert status == 200, body


@pytest.mark.parametrize("host", [
    "evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.evil.example", "evil.example:",
    "localhost@evil.example", "evil.example#localhost", "localhost evil.example", "localhost,evil.example",
    "[::1].evil.example", "[::2]", "::1", "127.0.0.1:notaport", "", "0x7f.0.0.1", "2130706433", "127.1",
    "xn--lcalhost-9za", "localhost:8000:8000",
])
@pytest.mark.parametrize("path", ["/api/info", "/", "/static/app.js", "/api/images/0?size=32"])
def test_a_host_the_server_is_not_known_by_is_refused_for_api_and_page(live_server, host, path):
    status, headers, body = _raw(live_server, "GET", path, {"Host": host})
    assert status == 400, (host, path, body[:200])
    if path.startswith("/api/"):
        assert json.loads(body)["error"]["code"] == "host_not_allowed"
    else:
        assert b"is not known as" in body and headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "localhost.", "127.0.0.1", "[::1]", "[::1]:{port}",
                                  "localhost:{port}", "127.0.0.1:{port}", "127.0.0.1:80"])
def test_loopback_names_are_allowed(live_server, host):
    status, _, body = _raw(live_server, "GET", "/api/info",
                           {"Host": host.format(port=live_server.server.effective_port)})
    assert status == 200, body


def test_allowed_hosts_are_added_not_replacing_loopback(named_server):
    for host in ("pics.example", "PICS.example:443", "localhost"):
        assert _raw(named_server, "GET", "/api/info", {"Host": host})[0] == 200, host
    assert _raw(named_server, "GET", "/api/info", {"Host": "other.example"})[0] == 400


def test_a_star_allows_any_host(live_server):
    from imgsearch.web import create_app

    app = create_app({"ALLOWED_HOSTS": ("*",)}, engine=live_server.app.extensions["imgsearch"])
    assert app.test_client().get("/api/info", headers={"Host": "anything.example"}).status_code == 200


@pytest.mark.parametrize("bound, host, status", [
    ("192.0.2.7", "192.0.2.7:8000", 200),  # bound to one address: it is a name the server is known by
    ("0.0.0.0", "192.0.2.7:8000", 400),  # a wildcard names none: add the names with --allowed-host
    ("::", "[2001:db8::1]", 400),
    ("0.0.0.0", "localhost:8000", 200),
    ("pics.internal", "pics.internal", 200),
])
def test_the_bound_address_is_allowed(live_server, bound, host, status):
    from imgsearch.web import create_app

    app = create_app({"BOUND_HOST": bound}, engine=live_server.app.extensions["imgsearch"])
    assert app.test_client().get("/api/info", headers={"Host": host}).status_code == status


_label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.lists(_label, min_size=1, max_size=4).map(".".join), port=st.none() | st.integers(1, 65535))
def test_any_other_name_is_refused(live_server, name, port):
    from imgsearch.web.hosts import allowed_host

    host = name if port is None else f"{name}:{port}"
    expected = name in ("localhost", "pics.example")
    assert allowed_host(host, ("pics.example",), None) is expected


@pytest.mark.parametrize("method, path, body", [
    ("DELETE", "/api/heads/cat", None),
    ("POST", "/api/search", b'{"id": 0}'),
    ("POST", "/api/heads", b'{"name": "x", "examples": {"a": [0], "b": [1]}}'),
    ("POST", "/api/search/batch", b'{"queries": [{"id": 0}]}'),
    ("PUT", "/api/heads/cat", b"{}"),
    ("PATCH", "/api/heads/cat", b"{}"),
])
@pytest.mark.parametrize("origin", ["https://evil.example", "http://evil.example:{port}", "null",
                                    "http://localhost:1", "http://127.0.0.1:{port}.evil.example",
                                    "http://127.0.0.1", "https://127.0.0.1:{port}x", "file://"])
def test_cross_origin_writes_and_posts_are_refused(headed_server, method, path, body, origin):
    port = headed_server.server.effective_port
    headers = {"Host": f"127.0.0.1:{port}", "Origin": origin.format(port=port), "Content-Type": "application/json"}
    status, _, data = _raw(headed_server, method, path, headers, body)
    assert status == 403, (origin, data)
    assert json.loads(data)["error"]["code"] == "cross_origin"


def test_sec_fetch_site_cross_site_is_refused_without_origin(headed_server):
    port = headed_server.server.effective_port
    status, _, data = _raw(headed_server, "POST", "/api/search",
                           {"Host": f"127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site",
                            "Content-Type": "application/json"}, b'{"id": 0}')
    assert status == 403 and json.loads(data)["error"]["code"] == "cross_origin"


def test_same_origin_posts_and_clients_without_origin_are_answered(headed_server):
    port = headed_server.server.effective_port
    for headers in ({"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
                    {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
                    {"Host": f"127.0.0.1:{port}"}):
        status, _, data = _raw(headed_server, "POST", "/api/search", {**headers, "Content-Type": "application/json"},
                               b'{"id": 0, "k": 2}')
        assert status == 200, (headers, data)


def test_cross_origin_reads_are_answered(headed_server):
    """GETs change nothing, and a page on another site cannot read the answer (no CORS headers)."""
    port = headed_server.server.effective_port
    status, headers, _ = _raw(headed_server, "GET", "/api/info",
                              {"Host": f"127.0.0.1:{port}", "Origin": "https://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers


def test_an_allowed_origin_may_post_and_read_the_answer(named_server):
    headers = {"Host": "pics.example", "Origin": "https://front.example", "Content-Type": "application/json"}
    status, answer_headers, data = _raw(named_server, "POST", "/api/search", headers, b'{"id": 0, "k": 2}')
    assert status == 200, data
    assert answer_headers["Access-Control-Allow-Origin"] == "https://front.example"
    status, answer_headers, _ = _raw(named_server, "OPTIONS", "/api/search",
                                     {**headers, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "content-type, authorization"})
    assert status in (200, 204)
    assert answer_headers["Access-Control-Allow-Origin"] == "https://front.example"
    assert "authorization" in answer_headers["Access-Control-Allow-Headers"].lower()
    status, _, _ = _raw(named_server, "POST", "/api/search", {**headers, "Origin": "https://front.example.evil"},
                        b'{"id": 0}')
    assert status == 403


@pytest.mark.parametrize("config, message", [
    ({"ALLOWED_HOSTS": ("bad host",)}, "ALLOWED_HOSTS"),
    ({"ALLOWED_HOSTS": ("a.example:80",)}, "without a port"),
    ({"ALLOWED_HOSTS": "pics.example"}, "ALLOWED_HOSTS"),
    ({"ALLOWED_ORIGINS": ("front.example",)}, "https://front.example"),
    ({"ALLOWED_ORIGINS": ("https://front.example/path",)}, "ALLOWED_ORIGINS"),
    ({"ALLOWED_ORIGINS": ("*",)}, "ALLOWED_ORIGINS"),
])
def test_host_and_origin_settings_are_checked_at_start(live_server, config, message):
    from imgsearch.search.errors import InvalidInputError
    from imgsearch.web import create_app

    with pytest.raises(InvalidInputError, match=message):
        create_app(config, engine=live_server.app.extensions["imgsearch"])


def test_serve_takes_allowed_hosts_and_origins():
    from click.testing import CliRunner

    from imgsearch.web.cli import serve

    help_text = CliRunner().invoke(serve, ["--help"]).output
    assert "--allowed-host" in help_text and "--allowed-origin" in help_text
