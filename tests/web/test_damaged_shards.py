"""A shard damaged under a running server is a clear answer, and health says so (issue 30, item 10).

A shard's bytes garbled, cut short or deleted while a real server on loopback serves the folder: every
query that reads that shard answers 503 ``shard_damaged`` naming the shard (no server path, no
traceback, one log line for the shard however many queries hit it), queries that do not read it are
answered, and ``GET /api/health`` says ``degraded`` with the reason (still 200: the server answers).  A
FAISS file damaged on disk under the server changes no answer (it was loaded) and health says so.
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
import requests

from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.search.engine import SearchEngine
from tests.helpers import LiveServer, rng_image


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """An index of 24 pictures in 4 shards of 6 (fake model)."""
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from tests.pixel_model import NAME

    root = tmp_path_factory.mktemp("damaged")
    (root / "images").mkdir()
    for i in range(24):
        rng_image(i, (64 + i, 48)).save(root / "images" / f"p{i:02d}.png")
    index_images([root / "images"], root / "idx", IndexConfig(progress=False, backbone=NAME, shard_size=6))
    return root / "idx"


@pytest.fixture
def served(pristine, tmp_path):
    """(server, engine over the same copy, its shards' ids) on a fresh copy of the index."""
    from imgsearch.web import create_app

    copy = tmp_path / "idx"
    shutil.copytree(pristine, copy)
    store = EmbeddingStore(copy)
    shards = {name: store.read_table([name], ["id"]).column("id").to_pylist()
              for name in store.read_manifest()["shards"]}
    assert len(shards) == 4
    live = LiveServer(create_app({"INDEX_DIR": str(copy)}))
    yield live, SearchEngine.open(copy), shards
    live.close()


def _garble(path):
    """Bytes in the middle of the file overwritten, its size and modification time kept."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle // 4: middle + middle // 2] = bytes(len(data[middle // 4: middle + middle // 2]))  # zeros
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def _delete(path):
    path.unlink()


DAMAGE = [_garble, _truncate, _delete]


def _get(server, path):
    return requests.get(server.url + path, timeout=30)


def _post(server, path, body):
    return requests.post(server.url + path, json=body, timeout=30)


def _is_damage_answer(r, shard):
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "shard_damaged" and shard in error["message"]
    assert "/" not in error["message"].replace("'imgsearch verify --repair'", "")  # no server path
    return True


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_queries_reading_a_damaged_shard_are_503_and_the_rest_answered(served, damage, caplog):
    server, engine, shards = served
    names = sorted(shards)
    shard, other = names[1], names[2]
    hit, fine = shards[shard][0], shards[other][0]
    assert _get(server, "/api/health").json()["status"] == "ok"
    fine_vector = engine.vector(fine).tolist()
    damage(engine.store.shard_dir / shard)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            assert _is_damage_answer(_post(server, "/api/search", {"id": hit, "k": 3}), shard)
            r = _post(server, "/api/search/batch", {"queries": [{"id": hit, "k": 3}, {"vector": fine_vector, "k": 1}]})
            assert r.status_code == 200, r.text
            first, second = r.json()["results"]
            assert first["status"] == 503 and first["error"]["code"] == "shard_damaged"
            assert isinstance(second, list) and second
        for path in (f"/api/images/{hit}", f"/api/images/{hit}?size=64"):
            assert _is_damage_answer(_get(server, path), shard)
        # queries that do not read the damaged shard are answered (one whose results are in it reads it)
        r = _post(server, "/api/search", {"vector": fine_vector, "k": 1})
        assert r.status_code == 200 and r.json()["results"][0]["id"] == fine
        assert _get(server, f"/api/images/{fine}").status_code == 200
    assert not [rec for rec in caplog.records if rec.exc_info], "a traceback was logged"
    said = [rec for rec in caplog.records if shard in rec.getMessage() and rec.levelno >= logging.ERROR]
    assert len(said) == 1, [rec.getMessage() for rec in said]  # once, however many queries met it
    health = _get(server, "/api/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded" and shard in body["reason"] and other not in body["reason"]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda f: f.__name__.strip("_"))
def test_health_is_degraded_before_any_query_meets_the_damage(served, damage):
    server, engine, shards = served
    shard = sorted(shards)[3]
    damage_path = engine.store.shard_dir / shard
    if damage is _garble:  # size and mtime kept: only a read can tell, so this one is found by a query
        damage(damage_path)
        assert _get(server, "/api/health").json()["status"] == "ok"
        _post(server, "/api/search", {"id": shards[shard][-1], "k": 2})
    else:
        damage(damage_path)
    body = _get(server, "/api/health").json()
    assert body["status"] == "degraded" and shard in body["reason"], body


def test_a_faiss_file_damaged_on_disk_changes_no_answer_and_health_says_so(served):
    server, engine, shards = served
    some = shards[sorted(shards)[0]][0]
    before = _post(server, "/api/search", {"id": some, "k": 5}).json()["results"]
    faiss_file = engine.store.root / engine.manifest["index_file"]
    faiss_file.write_bytes(faiss_file.read_bytes()[:100])
    after = _post(server, "/api/search", {"id": some, "k": 5})
    assert after.status_code == 200 and after.json()["results"] == before  # the loaded index answers
    body = _get(server, "/api/health").json()
    assert body["status"] == "degraded" and engine.manifest["index_file"] in body["reason"]


def test_the_python_engine_names_the_damaged_shard(served):
    from imgsearch.search.errors import DamagedShardError

    _, engine, shards = served
    shard = sorted(shards)[0]
    _garble(engine.store.shard_dir / shard)
    with pytest.raises(DamagedShardError, match=f"shard {shard} .* is unreadable") as raised:
        engine.vector(shards[shard][0])
    assert raised.value.shard == shard
    assert engine.health()["status"] == "degraded" and shard in engine.health()["reason"]
    other = shards[sorted(shards)[1]][0]
    assert np.isfinite(engine.vector(other)).all()
