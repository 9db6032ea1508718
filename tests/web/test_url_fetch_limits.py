"""Slow remote images cannot take the server: URL fetches are capped (503 ``busy`` beyond the cap, with
Retry-After), a request's fetches share one deadline, health and other queries keep answering while remote
servers trickle; and every way a fetch fails says truthfully which it was (refused, unresolvable, too slow,
too large, hung up)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from imgsearch.search.query.remote import UrlFetchError, UrlNotAllowedError, UrlPolicy, fetch_image
from tests.helpers import LiveServer
from tests.image_server import ImageServer
from tests.pixel_model import DIM

pytestmark = pytest.mark.timeout(120)

LOCAL = UrlPolicy(allow_networks=("127.0.0.1/32",), max_bytes=2 * 2**20, timeout=3)


@pytest.fixture(scope="module")
def images(photos_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    (folder / "rocket.jpg").write_bytes((photos_dir / "rocket.jpg").read_bytes())
    server = ImageServer(folder)
    yield server
    server.close()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_listener():
    """A socket that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def hang_up_listener():
    """A socket that accepts a connection and closes it at once, without an answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            conn.recv(4096)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


def test_a_refused_connection_says_connection_refused():
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(UrlFetchError) as info:
        fetch_image(f"http://127.0.0.1:{port}/x.jpg", LOCAL)
    message = str(info.value)
    assert "connection refused" in message and f"127.0.0.1:{port}" in message, message
    assert "within the limit" not in message
    assert time.monotonic() - started < 2


def test_a_name_that_does_not_resolve_says_so():
    with pytest.raises(UrlFetchError) as info:
        fetch_image("http://no-such-host.invalid/x.jpg", LOCAL)
    message = str(info.value)
    assert "cannot resolve" in message and "no-such-host.invalid" in message, message
    assert "refused" not in message and "within the limit" not in message


def test_a_server_that_never_answers_is_too_slow(silent_listener):
    started = time.monotonic()
    with pytest.raises(UrlNotAllowedError) as info:
        fetch_image(f"http://127.0.0.1:{silent_listener}/x.jpg", UrlPolicy(allow_networks=("127.0.0.1/32",),
                                                                           timeout=1))
    assert "not fetched within the limit of 1 seconds" in str(info.value)
    assert time.monotonic() - started < 3


def test_a_server_that_hangs_up_says_it_closed_the_connection(hang_up_listener):
    with pytest.raises(UrlFetchError) as info:
        fetch_image(f"http://127.0.0.1:{hang_up_listener}/x.jpg", LOCAL)
    message = str(info.value)
    assert "closed the connection" in message and "within the limit" not in message, message


def test_too_large_is_still_too_large(images):
    with pytest.raises(UrlNotAllowedError, match="over the limit of 1,000 bytes"):
        fetch_image(f"{images.url}/rocket.jpg", UrlPolicy(allow_networks=("127.0.0.1/32",), max_bytes=1000))


@pytest.fixture(scope="module")
def capped_server(live_server):
    """8 request threads, at most 2 URL fetches at once, 3 s per fetch; fetching from 127.0.0.1 allowed."""
    from imgsearch.web import create_app

    app = create_app({"ALLOW_URL_QUERIES": True, "URL_QUERY_ALLOW_NETWORKS": "127.0.0.1/32",
                      "URL_QUERY_TIMEOUT": 3, "SERVER_THREADS": 8, "MAX_URL_FETCHES": 2},
                     engine=live_server.app.extensions["imgsearch"])
    server = LiveServer(app, threads=8)
    yield server
    server.close()


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * 0.99))]


def test_trickling_remote_images_cannot_take_the_server(capped_server, images):
    """8 URL queries to a server that trickles a byte every 0.1 s: 2 are fetched (and cut off at the deadline),
    6 get 503 busy at once; health and a vector query answer quickly throughout."""
    answers: list = [None] * 8

    def query(i):
        answers[i] = requests.post(capped_server.url + "/api/search", json={"url": f"{images.url}/slow.jpg"},
                                   timeout=60)

    threads = [threading.Thread(target=query, args=(i,)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(0.5)  # the fetches are under way
    health, vector = [], []
    while time.monotonic() - started < 2.5:
        t0 = time.monotonic()
        assert requests.get(capped_server.url + "/api/health", timeout=30).status_code == 200
        health.append(time.monotonic() - t0)
        t0 = time.monotonic()
        r = requests.post(capped_server.url + "/api/search", json={"vector": [1.0] * DIM, "k": 3}, timeout=30)
        assert r.status_code == 200, r.text
        vector.append(time.monotonic() - t0)
    for t in threads:
        t.join(60)
    assert _p99(health) < 1.0, health
    assert _p99(vector) < 2.0, vector
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [400, 400] + [503] * 6, [a.text for a in answers]
    for a in answers:
        if a.status_code == 503:
            assert a.json()["error"]["code"] == "busy" and "URL" in a.json()["error"]["message"]
            assert int(a.headers["Retry-After"]) >= 1
        else:
            assert a.json()["error"]["code"] == "url_not_allowed" and "within the limit of 3 seconds" in a.text


def test_a_batch_of_slow_urls_shares_one_deadline(capped_server, images):
    """A batch's URL fetches share the request's deadline: 5 trickling URLs hold a thread ~3 s, not 15."""
    started = time.monotonic()
    r = requests.post(capped_server.url + "/api/search/batch",
                      json={"queries": [{"url": f"{images.url}/slow.jpg"}] * 5}, timeout=60)
    took = time.monotonic() - started
    assert r.status_code == 200, r.text
    assert all(item["error"]["code"] == "url_not_allowed" for item in r.json()["results"]), r.text
    assert took < 6, took


def test_a_refused_url_through_the_server_says_connection_refused(capped_server):
    port = _closed_port()
    r = requests.post(capped_server.url + "/api/search", json={"url": f"http://127.0.0.1:{port}/x.jpg"}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "url_fetch_failed" and "connection refused" in r.json()["error"]["message"]


@pytest.mark.parametrize("value", [0, -1, "2", True, 1.5])
def test_the_fetch_cap_is_checked_at_start(live_server, value):
    from imgsearch.search.errors import InvalidInputError
    from imgsearch.web import create_app

    with pytest.raises(InvalidInputError, match="MAX_URL_FETCHES"):
        create_app({"MAX_URL_FETCHES": value}, engine=live_server.app.extensions["imgsearch"])


def test_the_fetch_cap_defaults_to_a_quarter_of_the_threads(live_server):
    from imgsearch.web import create_app

    engine = live_server.app.extensions["imgsearch"]
    assert create_app({"SERVER_THREADS": 8}, engine=engine).config["MAX_URL_FETCHES"] == 2
    assert create_app({"SERVER_THREADS": 2}, engine=engine).config["MAX_URL_FETCHES"] == 1
    assert create_app({"SERVER_THREADS": 32}, engine=engine).config["MAX_URL_FETCHES"] == 8


def test_the_client_sees_busy_with_its_retry_after(capped_server, images):
    from imgsearch.search.client.http_client import SearchAPIError, SearchClient

    hold = [threading.Thread(target=requests.post, args=(capped_server.url + "/api/search",),
                             kwargs={"json": {"url": f"{images.url}/slow.jpg"}, "timeout": 60}) for _ in range(2)]
    for t in hold:
        t.start()
    time.sleep(0.5)
    try:
        with SearchClient(capped_server.url, timeout=30) as client:
            with pytest.raises(SearchAPIError) as info:
                client.search(url=f"{images.url}/rocket.jpg")
        assert info.value.status == 503 and info.value.code == "busy" and info.value.retry_after == 3
    finally:
        for t in hold:
            t.join(60)


def test_serve_takes_the_fetch_cap(built_index):
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import fake_model_env

    imgsearch = str(Path(sys.executable).parent / "imgsearch")
    bad = subprocess.run([imgsearch, "serve", "--index", str(built_index[0]), "--max-url-fetches", "0"],
                         capture_output=True, text=True, timeout=120, env=fake_model_env())
    assert bad.returncode == 2 and "Invalid value for '--max-url-fetches'" in bad.stderr, bad.stderr
