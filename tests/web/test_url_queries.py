"""Query images by URL, through the SSRF guard (search/query/remote.py): refused addresses (IPv4 and IPv6,
before connecting and after every redirect), schemes, sizes, times and content types; the happy path
from a local image server that the tests allow explicitly; a real server, the client and the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from PIL import Image

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.search.query.remote import (
    UrlFetchError,
    UrlNotAllowedError,
    UrlPolicy,
    fetch_image,
    refusal,
)
from tests.helpers import LiveServer, fake_model_env
from tests.image_server import ImageServer

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
LOCAL = UrlPolicy(allow_networks=("127.0.0.1/32",), max_bytes=2 * 2**20, timeout=5)


@pytest.fixture(scope="module")
def images(photos_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    for name in ("rocket.jpg", "astronaut.jpg", "retina.jpg"):
        (folder / name).write_bytes((photos_dir / name).read_bytes())
    canvas = Image.new("RGB", (1024, 512))
    for x, name in ((0, "astronaut"), (512, "retina")):
        with Image.open(photos_dir / f"{name}.jpg") as im:
            canvas.paste(im.convert("RGB").resize((512, 512)), (x, 0))
    canvas.save(folder / "composite.png")
    server = ImageServer(folder)
    yield server
    server.close()


@pytest.fixture(scope="module")
def url_server(live_server):
    """A server with URL queries on, allowed to fetch from 127.0.0.1 only (sharing live_server's engine)."""
    from imgsearch.web import create_app

    app = create_app({"ALLOW_URL_QUERIES": True, "URL_QUERY_ALLOW_NETWORKS": "127.0.0.1/32",
                      "MAX_CONTENT_LENGTH": 2 * 2**20, "URL_QUERY_TIMEOUT": 2},
                     engine=live_server.app.extensions["imgsearch"])
    server = LiveServer(app)
    yield server
    server.close()


@pytest.fixture(scope="module")
def guarded_server(live_server):
    """A server with URL queries on and the default guard: public addresses only."""
    from imgsearch.web import create_app

    server = LiveServer(create_app({"ALLOW_URL_QUERIES": True}, engine=live_server.app.extensions["imgsearch"]))
    yield server
    server.close()


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.5.4", "private"), ("192.168.0.1", "private"), ("fd00::1", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1%1", "link-local"),
    ("::ffff:127.0.0.1", "loopback address (IPv4 127.0.0.1 inside IPv6"), ("::ffff:10.0.0.1", "private address (IPv4"),
    ("2002:7f00:1::", "loopback address (IPv4 127.0.0.1 inside"), ("64:ff9b::a9fe:a9fe", "link-local address (IPv4 169.254"),
    ("224.0.0.1", "multicast"), ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
    ("0.1.2.3", "0.0.0.0/8"), ("100.64.0.1", "100.64.0.0/10"), ("240.0.0.1", "reserved"),
    ("255.255.255.255", "255.255.255.255 is a"), ("fec0::1", "site-local"), ("198.18.0.1", "198.18.0.0/15"),
])
def test_the_guard_refuses_every_non_public_address(address, reason):
    assert reason in (refusal(address) or "")


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_the_guard_lets_public_addresses_through(address):
    assert refusal(address) is None


def test_allow_networks_widen_the_guard_for_them_only():
    allow = UrlPolicy(allow_networks="127.0.0.1/32, 10.0.0.0/8").allow_networks
    assert refusal("127.0.0.1", allow) is None and refusal("10.9.8.7", allow) is None
    assert "loopback" in refusal("127.0.0.2", allow) and "loopback" in refusal("::1", allow)
    with pytest.raises(ValueError, match="not a network"):
        UrlPolicy(allow_networks=["127.0.0.1/33"])


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1/rocket.jpg", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("gopher://example.com/", "only http and https"),
    ("rocket.jpg", "without a scheme"),
    ("http:///nohost", "names no host"),
    ("http://user:secret@127.0.0.1/rocket.jpg", "credentials"),
    ("http://127.0.0.1:99999/", "malformed"),
])
def test_bad_urls_are_refused_before_anything_is_resolved(url, message):
    with pytest.raises(UrlNotAllowedError, match=message):
        fetch_image(url, LOCAL)


def test_the_default_guard_refuses_loopback_without_connecting(images):
    before = len(images.requests)
    for url in (f"{images.url}/rocket.jpg", f"http://localhost:{images.port}/rocket.jpg",
                f"http://[::1]:{images.port}/rocket.jpg", f"http://[::ffff:127.0.0.1]:{images.port}/rocket.jpg"):
        with pytest.raises(UrlNotAllowedError, match="loopback"):
            fetch_image(url)
    assert len(images.requests) == before  # refused before a connection was opened


def test_an_allowed_server_is_fetched_and_redirects_are_followed_three_times(images, photos_dir):
    assert fetch_image(f"{images.url}/rocket.jpg", LOCAL) == (photos_dir / "rocket.jpg").read_bytes()
    assert fetch_image(f"{images.url}/hops/2", LOCAL) == (photos_dir / "rocket.jpg").read_bytes()  # 3 redirects
    with pytest.raises(UrlNotAllowedError, match="more than 3 redirects"):
        fetch_image(f"{images.url}/hops/3", LOCAL)


@pytest.mark.parametrize("target, reason", [
    ("http://127.0.0.2:{port}/rocket.jpg", "127.0.0.2 is a loopback"),
    ("http://[::1]:{port}/rocket.jpg", "::1 is a loopback"),
    ("http://10.0.0.1/rocket.jpg", "10.0.0.1 is a private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::ffff:192.168.1.1]/", "private address (IPv4 192.168.1.1 inside IPv6"),
    ("file:///etc/passwd", "only http and https"),
])
def test_a_redirect_to_a_refused_address_is_refused(images, target, reason):
    with pytest.raises(UrlNotAllowedError, match=reason.replace("(", r"\(")):
        fetch_image(f"{images.url}/redirect?to={target.format(port=images.port)}", LOCAL)


@pytest.mark.parametrize("name, error, message", [
    ("page.html", UrlNotAllowedError, "is not an image (Content-Type 'text/html'"),
    ("big.jpg", UrlNotAllowedError, "over the limit of 2,097,152 bytes (it declares 3,145,730 bytes)"),
    ("endless.jpg", UrlNotAllowedError, "over the limit of 2,097,152 bytes (it sent more"),
    ("gzip.jpg", UrlNotAllowedError, "'gzip'-encoded"),
    ("missing.jpg", UrlFetchError, "answered HTTP 404"),
])
def test_replies_that_are_not_a_small_image_are_refused(images, name, error, message):
    with pytest.raises(error) as info:
        fetch_image(f"{images.url}/{name}", LOCAL)
    assert message in str(info.value)


def test_a_trickling_server_is_cut_off_at_the_deadline(images):
    started = time.monotonic()
    with pytest.raises(UrlNotAllowedError, match="not fetched within the limit of 1 seconds"):
        fetch_image(f"{images.url}/slow.jpg", UrlPolicy(allow_networks=("127.0.0.1/32",), timeout=1))
    assert time.monotonic() - started < 3


def test_the_connection_goes_to_the_address_that_was_checked(images, photos_dir, monkeypatch):
    """A name is resolved once: a rebinding DNS answer (public, then loopback) is never asked a second time,
    and the request carries the name in its Host header."""
    real = socket.getaddrinfo
    answers = []

    def resolver(host, *args, **kwargs):
        if host == "images.test":
            answers.append(host)
            # first answer: the allowed address; any later lookup would get the metadata service
            address = "127.0.0.1" if len(answers) == 1 else "169.254.169.254"
            return real(address, *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    data = fetch_image(f"http://images.test:{images.port}/rocket.jpg", LOCAL)
    assert data == (photos_dir / "rocket.jpg").read_bytes() and answers == ["images.test"]
    assert images.requests[-1] == ("/rocket.jpg", f"images.test:{images.port}")


def test_url_queries_are_off_by_default_on_the_server(live_server, images):
    r = requests.post(live_server.url + "/api/search", json={"url": f"{images.url}/rocket.jpg"}, timeout=30)
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "url_queries_disabled" and "ALLOW_URL_QUERIES" in r.json()["error"]["message"]
    with pytest.raises(SearchAPIError) as info:
        SearchClient(live_server.url, timeout=30).search(url=f"{images.url}/rocket.jpg")
    assert info.value.status == 403 and info.value.code == "url_queries_disabled"
    assert requests.get(live_server.url + "/api/info", timeout=10).json()["url_queries"] is False


def test_a_server_with_the_default_guard_refuses_local_addresses(guarded_server, images):
    before = len(images.requests)
    for url in (f"{images.url}/rocket.jpg", "http://10.0.0.1/x.jpg", "http://[::1]/x.jpg",
                "http://169.254.169.254/latest/meta-data/"):
        r = requests.post(guarded_server.url + "/api/search", json={"url": url}, timeout=30)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "url_not_allowed" and "is not allowed" in r.json()["error"]["message"]
    assert len(images.requests) == before


def test_url_search_through_a_real_server(url_server, images, built_index):
    from imgsearch.search.engine import SearchEngine

    engine = SearchEngine.open(built_index[0])
    r = requests.post(url_server.url + "/api/search", json={"url": f"{images.url}/rocket.jpg", "k": 3}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["results"][0]["path"].endswith("rocket.jpg") and body["results"][0]["score"] > 0.99
    assert body["query"] == {"type": "url", "url": f"{images.url}/rocket.jpg"}
    with SearchClient(url_server.url, timeout=30) as client:
        hits = client.search(url=f"{images.url}/composite.png", k=2, box=[0.5, 0, 1, 1])
        assert hits[0].path.endswith("retina.jpg")
        assert [h.id for h in hits] == [h.id for h in engine.search_url(
            f"{images.url}/composite.png", 2, box=[0.5, 0, 1, 1], policy=LOCAL)]
        assert client.info()["url_queries"] is True


@pytest.mark.parametrize("url, status, code, message", [
    ("{base}/redirect?to=http://10.0.0.1/", 400, "url_not_allowed", "10.0.0.1 is a private address"),
    ("{base}/redirect?to=http://[::1]/", 400, "url_not_allowed", "::1 is a loopback address"),
    ("{base}/page.html", 400, "url_not_allowed", "is not an image"),
    ("{base}/big.jpg", 400, "url_not_allowed", "over the limit of 2,097,152 bytes"),
    ("{base}/slow.jpg", 400, "url_not_allowed", "within the limit of 2 seconds"),
    ("{base}/text.jpg", 400, "invalid_image", "text.jpg: not an image Pillow recognises"),
    ("{base}/missing.jpg", 400, "url_fetch_failed", "HTTP 404"),
    ("file:///etc/passwd", 400, "url_not_allowed", "only http and https"),
    ("ftp://127.0.0.1/x.jpg", 400, "url_not_allowed", "only http and https"),
    ("", 400, "url_not_allowed", "http:// or https:// URL"),
])
def test_bad_url_queries_through_a_real_server(url_server, images, url, status, code, message):
    r = requests.post(url_server.url + "/api/search", json={"url": url.format(base=images.url)}, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and message in err["message"], err


def test_a_url_with_an_id_or_a_bad_box_is_refused(url_server, images):
    r = requests.post(url_server.url + "/api/search", json={"url": f"{images.url}/rocket.jpg", "id": 0}, timeout=30)
    assert r.status_code == 400 and "not several" in r.json()["error"]["message"]
    r = requests.post(url_server.url + "/api/search", json={"url": f"{images.url}/rocket.jpg", "box": [0, 0, 2, 1]},
                      timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_box"


def test_server_settings_are_checked_at_start(live_server):
    from imgsearch.search.errors import InvalidInputError
    from imgsearch.web import create_app

    engine = live_server.app.extensions["imgsearch"]
    with pytest.raises(InvalidInputError, match="not a network"):
        create_app({"URL_QUERY_ALLOW_NETWORKS": "localhost"}, engine=engine)
    with pytest.raises(InvalidInputError, match="ALLOW_URL_QUERIES must be True or False"):
        create_app({"ALLOW_URL_QUERIES": "yes"}, engine=engine)


def test_the_cli_searches_urls_with_the_guard_on(built_index, images):
    index_dir = str(built_index[0])
    url = f"{images.url}/composite.png"
    ok = subprocess.run([IMGSEARCH, "search", "--index", index_dir, "--allow-network", "127.0.0.1/32", "--box",
                         "0,0,0.5,1", "-k", "2", "--json", url], capture_output=True, text=True, timeout=300,
                        env=fake_model_env())
    assert ok.returncode == 0, ok.stderr
    found = json.loads(ok.stdout)
    assert found["query"] == url and found["results"][0]["path"].endswith("astronaut.jpg")
    refused = subprocess.run([IMGSEARCH, "search", "--index", index_dir, url, "file:///etc/passwd"],
                             capture_output=True, text=True, timeout=120, env=fake_model_env())
    assert refused.returncode == 1 and refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert len(lines) == 2 and "127.0.0.1 is a loopback address" in lines[0] and "only http and https" in lines[1]


def test_serve_passes_its_url_options_to_the_server(built_index):
    bad = subprocess.run([IMGSEARCH, "serve", "--index", str(built_index[0]), "--port", "0", "--allow-url-queries",
                          "--url-allow-network", "nonsense"], capture_output=True, text=True, timeout=120,
                         env=fake_model_env())
    assert bad.returncode == 1 and bad.stderr.startswith("Error: 'nonsense' is not a network"), bad.stderr


@pytest.fixture(scope="module")
def tls_images(tmp_path_factory, photos_dir):
    """An https server on 127.0.0.1 whose certificate (self-signed, made here) names images.test only."""
    import ssl

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=images.test",
                    "-addext", "subjectAltName=DNS:images.test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    (folder / "rocket.jpg").write_bytes((photos_dir / "rocket.jpg").read_bytes())
    server = ImageServer(folder)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    yield server, str(cert)
    server.close()


def test_https_is_checked_against_the_urls_name_while_connecting_to_the_checked_address(tls_images, photos_dir,
                                                                                      monkeypatch):
    server, cert = tls_images
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo",
                        lambda host, *a, **kw: real("127.0.0.1" if host == "images.test" else host, *a, **kw))
    policy = UrlPolicy(allow_networks=("127.0.0.1/32",), ca_certs=cert, timeout=5)
    url = f"https://images.test:{server.port}/rocket.jpg"
    assert fetch_image(url, policy) == (photos_dir / "rocket.jpg").read_bytes()
    assert server.requests[-1] == ("/rocket.jpg", f"images.test:{server.port}")
    with pytest.raises(UrlFetchError, match="hostname '127.0.0.1' doesn't match 'images.test'"):
        fetch_image(f"https://127.0.0.1:{server.port}/rocket.jpg", policy)  # the certificate names images.test only
    with pytest.raises(UrlFetchError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        fetch_image(url, UrlPolicy(allow_networks=("127.0.0.1/32",), timeout=5))  # not signed by a public CA


def test_the_engine_refuses_a_bad_box_or_head_before_fetching(built_index, images):
    from imgsearch.search.engine import SearchEngine
    from imgsearch.search.errors import HeadError, InvalidBoxError

    engine = SearchEngine.open(built_index[0])
    before = len(images.requests)
    with pytest.raises(InvalidBoxError):
        engine.search_url(f"{images.url}/rocket.jpg", box=[0, 0, 0, 0], policy=LOCAL)
    with pytest.raises(HeadError):
        engine.search_url(f"{images.url}/rocket.jpg", head="nope", policy=LOCAL)
    assert len(images.requests) == before
    with pytest.raises(UrlNotAllowedError, match="loopback"):
        engine.search_url(f"{images.url}/rocket.jpg")  # the default policy: public addresses only
