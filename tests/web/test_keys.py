"""API keys with scopes: the keys file (hashes only, 0600, outside the index), ``imgsearch keys``, the server's
checks (``--require-key``, writes off loopback, 401/403 with WWW-Authenticate), revocation without a restart,
writes logged with the key's name, and the client's ``api_key``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.web.keys import KeyStore
from tests.helpers import LiveServer, fake_model_env
from tests.pixel_model import DIM

pytestmark = pytest.mark.timeout(120)

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
VECTOR = {"vector": [1.0] * DIM, "k": 2}


@pytest.fixture
def store(tmp_path):
    return KeyStore(tmp_path / "config" / "keys.json")


def test_a_key_is_shown_once_and_only_its_hash_is_stored(store):
    token, record = store.create("read", "ci")
    assert token.startswith("isk_") and len(token) >= 40
    text = store.path.read_text()
    assert token not in text and token[4:] not in text and record.sha256 in text
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o700
    assert store.check(token) == record and record.scope == "read"
    for wrong in (token + "x", token[:-1], token.upper(), record.sha256, "", "isk_", " " + token):
        assert store.check(wrong) is None, wrong
    assert sorted(p.name for p in store.path.parent.iterdir()) == [".keys.json.lock", "keys.json"]  # no temporary file


def test_names_scopes_and_revocation(store):
    from imgsearch.search.errors import InvalidInputError, NotFoundError

    _, a = store.create("write")
    assert a.name.startswith("write-")
    store.create("read", "b")
    with pytest.raises(InvalidInputError, match="already"):
        store.create("read", "b")
    for bad in ("", "a b", "../x", "-x", "x" * 65, "ключ"):
        with pytest.raises(InvalidInputError, match="name"):
            store.create("read", bad)
    with pytest.raises(InvalidInputError, match="read or write"):
        store.create("admin", "c")
    assert [k.name for k in store.keys()] == [a.name, "b"]
    store.revoke("b")
    with pytest.raises(NotFoundError, match="no key named 'b'"):
        store.revoke("b")
    assert [k.name for k in store.keys()] == [a.name]


def test_a_damaged_keys_file_is_an_error_in_words(store):
    from imgsearch.search.errors import InvalidInputError

    store.path.parent.mkdir(parents=True)
    for content in ("{", '{"keys": [{"name": "a"}]}', '{"keys": [{"name": "a", "scope": "root", "created": "", '
                                                      '"sha256": "' + "0" * 64 + '"}]}'):
        store.path.write_text(content)
        with pytest.raises(InvalidInputError, match="damaged"):
            KeyStore(store.path).keys()


def test_the_keys_commands(tmp_path):
    keys_file = str(tmp_path / "k" / "keys.json")
    env = {**fake_model_env(), "IMGSEARCH_KEYS": keys_file}
    made = subprocess.run([IMGSEARCH, "keys", "create", "--scope", "write", "--name", "deploy"], capture_output=True,
                          text=True, timeout=60, env=env)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("isk_") and "\n" not in token
    assert "will not be shown again" in made.stderr and token not in made.stderr
    listed = subprocess.run([IMGSEARCH, "keys", "list", "--keys", keys_file], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0 and listed.stdout.startswith("deploy\twrite\t") and token not in listed.stdout
    assert KeyStore(keys_file).check(token).fingerprint in listed.stdout
    gone = subprocess.run([IMGSEARCH, "keys", "revoke", "deploy"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert gone.returncode == 0 and "revoked 'deploy'" in gone.stdout
    again = subprocess.run([IMGSEARCH, "keys", "revoke", "deploy"], capture_output=True, text=True, timeout=60,
                           env=env)
    assert again.returncode == 1 and again.stderr.strip().startswith("Error: no key named 'deploy'")
    assert len(again.stderr.strip().splitlines()) == 1
    bad = subprocess.run([IMGSEARCH, "keys", "create", "--scope", "root"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert bad.returncode == 2


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, headed_index):
    """A server with --require-key over a copy of the headed index; (server, store, read key, write key)."""
    from imgsearch.web import create_app

    folder = tmp_path_factory.mktemp("keyed") / "idx"
    shutil.copytree(headed_index, folder)
    store = KeyStore(tmp_path_factory.mktemp("keys") / "keys.json")
    read, _ = store.create("read", "reader")
    write, _ = store.create("write", "writer")
    server = LiveServer(create_app({"INDEX_DIR": str(folder), "WARM_UP": False, "REQUIRE_KEY": True,
                                    "KEYS_FILE": str(store.path)}))
    yield server, store, read, write
    server.close()


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def test_require_key_refuses_requests_without_a_good_key(keyed):
    server, _, read, _ = keyed
    for headers, code in (({}, "key_required"), (_auth("isk_nope"), "bad_key"), ({"Authorization": "Basic eDp5"}, "bad_key"),
                          ({"Authorization": "Bearer "}, "bad_key"), ({"Authorization": read}, "bad_key"),
                          (_auth(read + "x"), "bad_key"), (_auth(read[:-1]), "bad_key")):
        for method, path, body in (("GET", "/api/info", None), ("POST", "/api/search", VECTOR),
                                   ("GET", "/api/images/0", None), ("GET", "/api/heads", None),
                                   ("DELETE", "/api/heads/cat", None), ("GET", "/api/openapi.json", None)):
            r = requests.request(method, server.url + path, json=body, headers=headers, timeout=30)
            assert r.status_code == 401, (headers, path, r.text)
            assert r.json()["error"]["code"] == code and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(server.url + "/api/health", timeout=30).status_code == 200  # for load balancers
    assert requests.get(server.url + "/", timeout=30).status_code == 200  # the page, which asks for a key


def test_a_read_key_reads_and_cannot_write(keyed):
    server, _, read, _ = keyed
    assert requests.post(server.url + "/api/search", json=VECTOR, headers=_auth(read), timeout=30).status_code == 200
    r = requests.get(server.url + "/api/heads", headers={"Authorization": f"bearer  {read} "}, timeout=30)
    assert r.status_code == 200 and r.json()["training"]["allowed"] is False
    for method, path in (("DELETE", "/api/heads/cat"), ("POST", "/api/heads")):
        r = requests.request(method, server.url + path, json={"name": "x", "examples": {"a": [0], "b": [1]}},
                             headers=_auth(read), timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "write_scope_required", r.text
        assert "'reader' is read-only" in r.json()["error"]["message"]


def test_writes_are_logged_with_the_keys_name(keyed, caplog):
    server, _, _, write = keyed
    caplog.set_level(logging.INFO, logger="imgsearch.web.audit")
    r = requests.get(server.url + "/api/heads", headers=_auth(write), timeout=30)
    assert r.json()["training"]["allowed"] is True
    r = requests.delete(server.url + "/api/heads/cat", headers=_auth(write), timeout=120)
    assert r.status_code == 200, r.text
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "imgsearch.web.audit"]
    assert lines == ["write DELETE /api/heads/cat by key 'writer': 200"], lines


def test_revoking_and_creating_keys_takes_effect_without_a_restart(keyed):
    server, store, _, _ = keyed
    token, _ = KeyStore(store.path).create("read", "temporary")  # another process's store: the same file
    assert requests.get(server.url + "/api/info", headers=_auth(token), timeout=30).status_code == 200
    KeyStore(store.path).revoke("temporary")
    r = requests.get(server.url + "/api/info", headers=_auth(token), timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "bad_key"


def test_the_client_sends_its_key(keyed, monkeypatch):
    server, _, read, _ = keyed
    monkeypatch.delenv("IMGSEARCH_API_KEY", raising=False)
    with pytest.raises(SearchAPIError) as info:
        SearchClient(server.url, timeout=30).info()
    assert info.value.status == 401 and info.value.code == "key_required"
    with SearchClient(server.url, timeout=30, api_key=read) as client:
        assert len(client.search_vector([1.0] * DIM, k=2)) == 2
    monkeypatch.setenv("IMGSEARCH_API_KEY", read)
    assert SearchClient(server.url, timeout=30).info()["count"] > 0
    with pytest.raises(SearchAPIError) as info:
        SearchClient(server.url, api_key="isk_a\r\nX-Evil: 1")
    assert info.value.code == "invalid_api_key"


@pytest.fixture(scope="module")
def public(tmp_path_factory, live_server):
    """A server that says it listens beyond loopback (BOUND_HOST 0.0.0.0), without --require-key."""
    from imgsearch.web import create_app

    store = KeyStore(tmp_path_factory.mktemp("public-keys") / "keys.json")
    read, _ = store.create("read", "reader")
    write, _ = store.create("write", "writer")
    server = LiveServer(create_app({"KEYS_FILE": str(store.path)}, engine=live_server.app.extensions["imgsearch"]))
    server.app.config["BOUND_HOST"] = "0.0.0.0"
    yield server, read, write
    server.close()


def test_off_loopback_reads_are_open_and_writes_need_a_write_key(public):
    server, read, write = public
    assert requests.post(server.url + "/api/search", json=VECTOR, timeout=30).status_code == 200
    body = {"name": "x", "examples": {"a": [0], "b": [1]}}
    for method, path in (("DELETE", "/api/heads/nope"), ("POST", "/api/heads"), ("PUT", "/api/heads/nope")):
        r = requests.request(method, server.url + path, json=body, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "key_required", (path, r.text)
        assert "write key" in r.json()["error"]["message"]
        r = requests.request(method, server.url + path, json=body, headers=_auth(read), timeout=30)
        assert r.status_code == 403 and r.json()["error"]["code"] == "write_scope_required"
    r = requests.delete(server.url + "/api/heads/nope", headers=_auth(write), timeout=30)
    assert r.status_code == 404, r.text  # past the gate: the head does not exist
    r = requests.get(server.url + "/api/info", headers=_auth("isk_wrong"), timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "bad_key"  # a key sent is always checked


def test_on_loopback_without_require_key_nothing_changes(live_server):
    r = requests.get(live_server.url + "/api/heads", timeout=30)
    assert r.status_code == 200 and r.json()["training"]["allowed"] is True


def test_key_settings_are_checked_at_start(built_index, tmp_path):
    from imgsearch.search.errors import InvalidInputError
    from imgsearch.web import create_app

    base = {"INDEX_DIR": str(built_index[0]), "WARM_UP": False}
    with pytest.raises(InvalidInputError, match="no keys"):
        create_app({**base, "REQUIRE_KEY": True, "KEYS_FILE": str(tmp_path / "none.json")})
    with pytest.raises(InvalidInputError, match="inside the index folder"):
        create_app({**base, "KEYS_FILE": str(built_index[0] / "keys.json")})
    with pytest.raises(InvalidInputError, match="ALLOW_TRAINING is gone"):
        create_app({**base, "ALLOW_TRAINING": True})
    (tmp_path / "bad.json").write_text("[")
    with pytest.raises(InvalidInputError, match="damaged"):
        create_app({**base, "KEYS_FILE": str(tmp_path / "bad.json")})
    with pytest.raises(InvalidInputError, match="REQUIRE_KEY must be True or False"):
        create_app({**base, "REQUIRE_KEY": "yes", "KEYS_FILE": str(tmp_path / "none.json")})


def test_serve_refuses_the_old_training_switch(built_index):
    r = subprocess.run([IMGSEARCH, "serve", "--index", str(built_index[0]), "--allow-training"], capture_output=True,
                       text=True, timeout=120, env=fake_model_env())
    assert r.returncode == 2 and "write key" in r.stderr, r.stderr


def test_openapi_describes_bearer_keys(keyed):
    server, _, read, _ = keyed
    spec = requests.get(server.url + "/api/openapi.json", headers=_auth(read), timeout=30).json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "http", "scheme": "bearer"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if path == "/api/health":
                assert op.get("security") == [], path
                continue
            assert {"401", "400"} <= set(op["responses"]), (path, method)
            if method != "get":
                assert "403" in op["responses"], (path, method)
    assert json.dumps(spec).count("write_scope_required") >= 1
