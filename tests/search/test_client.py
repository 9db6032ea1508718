"""The Python client against small misbehaving servers on loopback: every failure is a
SearchAPIError, a call ends by its deadline however slowly the server answers, and replies
are capped in size."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest

from imgsearch.search.client.http_client import SearchAPIError, SearchClient


class FakeServer:
    """A raw TCP server on 127.0.0.1 answering every connection with ``respond(conn)``.

    It reads the request (headers and a Content-Length body) first, then lets ``respond``
    write whatever bytes it likes: the point is to send what no real HTTP server would.
    """

    def __init__(self, respond):
        self.respond = respond
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.respond(conn, self.stop)
            except OSError:
                pass  # the client hung up: that is what some tests want

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def serve():
    servers = []

    def start(respond) -> FakeServer:
        servers.append(FakeServer(respond))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def trickle(data: bytes, every: float):
    def respond(conn, stop):
        for i in range(len(data)):
            if stop.wait(every):
                return
            conn.sendall(data[i:i + 1])
    return respond


def reply(raw: bytes):
    def respond(conn, stop):
        conn.sendall(raw)
    return respond


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize("what, respond", [
    ("body trickled a byte at a time", trickle(JSON_HEAD + b"Content-Length: 40\r\n\r\n" + b" " * 40, 0.2)),
    ("headers trickled a byte at a time", trickle(JSON_HEAD + b"Content-Length: 2\r\n\r\n{}", 0.2)),
])
def test_a_call_ends_by_its_deadline_however_slowly_the_server_answers(serve, what, respond):
    server = serve(respond)
    client = SearchClient(server.url, timeout=(1, 1), deadline=1.5)  # each byte arrives within the read timeout
    started = time.monotonic()
    with pytest.raises(SearchAPIError) as err:
        client.health()
    elapsed = time.monotonic() - started
    assert err.value.code == "timeout", what
    assert "deadline of 1.5s" in err.value.message
    assert elapsed < 3.0, f"{what}: the call took {elapsed:.1f}s"


@pytest.mark.parametrize("what, raw, code", [
    ("broken chunked encoding", JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n", "bad_response"),
    ("gzip that is not gzip", JSON_HEAD + b"Content-Encoding: gzip\r\nContent-Length: 12\r\n\r\nnot gzipped!",
     "bad_response"),
    ("cut off mid-body", JSON_HEAD + b"Content-Length: 100\r\nConnection: close\r\n\r\n{\"status\"", "bad_response"),
    ("not HTTP at all", b"SSH-2.0-OpenSSH_9.2\r\n", "bad_response"),
    ("HTML instead of JSON", b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>", "invalid_response"),
])
def test_malformed_replies_are_search_api_errors(serve, what, raw, code):
    server = serve(reply(raw))
    with pytest.raises(SearchAPIError) as err:
        SearchClient(server.url, timeout=(2, 2)).health()
    assert err.value.code == code, f"{what}: {err.value}"


def test_gzip_replies_still_work(serve):
    body = gzip.compress(b'{"status": "ok", "count": 3}')
    server = serve(reply(JSON_HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body) + body))
    assert SearchClient(server.url, timeout=(2, 2)).health() == {"status": "ok", "count": 3}


@pytest.mark.parametrize("call", ["search_id", "classify_id"])
@pytest.mark.parametrize("body", [b'{"unexpected": 1}', b"[1, 2]", b'{"results": [{"id": "x"}]}', b"null",
                                  b'{"results": 5, "took_ms": 1, "backbone": "b"}'])
def test_json_of_an_unexpected_shape_is_a_search_api_error(serve, call, body):
    server = serve(reply(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body))
    with pytest.raises(SearchAPIError) as err:
        getattr(SearchClient(server.url, timeout=(2, 2)), call)(3)
    assert err.value.code == "invalid_response"


@pytest.mark.parametrize("call", ["health", "info"])
@pytest.mark.parametrize("body", [b"[1, 2]", b"null", b'"ok"'])
def test_health_and_info_take_a_json_object_and_nothing_else(serve, call, body):
    server = serve(reply(JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body))
    with pytest.raises(SearchAPIError) as err:
        getattr(SearchClient(server.url, timeout=(2, 2)), call)()
    assert err.value.code == "invalid_response"


def test_replies_over_the_size_cap_are_refused_without_reading_them(serve):
    declared = serve(reply(JSON_HEAD + b"Content-Length: 1000000000\r\n\r\n{"))
    started = time.monotonic()
    with pytest.raises(SearchAPIError) as err:
        SearchClient(declared.url, timeout=(2, 2)).health()
    assert err.value.code == "response_too_large" and time.monotonic() - started < 2

    def endless(conn, stop):
        conn.sendall(JSON_HEAD + b"Connection: close\r\n\r\n")
        chunk = b" " * 65536
        while not stop.is_set():
            conn.sendall(chunk)

    streaming = serve(endless)
    with pytest.raises(SearchAPIError) as err:
        SearchClient(streaming.url, timeout=(2, 2), max_response_bytes=2**20).image(3)
    assert err.value.code == "response_too_large"
    assert "1,048,576" in err.value.message


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "localhost", "ftp://127.0.0.1/", "http://", "", "file:///etc/passwd"])
def test_a_base_url_without_an_http_scheme_and_host_is_refused_up_front(url):
    with pytest.raises(SearchAPIError) as err:
        SearchClient(url)
    assert err.value.code == "invalid_url" and err.value.status is None


def test_an_unreachable_server_is_a_search_api_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SearchAPIError) as err:
        SearchClient(f"http://127.0.0.1:{port}", timeout=(1, 1)).health()
    assert err.value.code == "unreachable" and err.value.status is None


def test_error_replies_keep_the_servers_code_and_message(serve):
    body = b'{"error": {"code": "not_found", "message": "no image with id 7"}}'
    server = serve(reply(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % len(body) + body))
    with pytest.raises(SearchAPIError) as err:
        SearchClient(server.url, timeout=(2, 2)).search_id(7)
    assert (err.value.status, err.value.code, err.value.message) == (404, "not_found", "no image with id 7")
