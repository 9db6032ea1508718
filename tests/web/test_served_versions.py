"""No request fails because a version's files went away: however fast versions are published, a
server answers from a version whose files are all there (the newest, once it is behind by more
than one), and a request that a publish races reopens the newest version and is answered from it."""

from __future__ import annotations

import shutil

import pytest
import requests

from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.run.remove import remove_images
from imgsearch.search.engine import SearchEngine
from tests.helpers import LiveServer


@pytest.fixture
def index_copy(built_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(built_index[0], copy)
    return copy


def shard_ids(index_dir) -> list[list[int]]:
    store = EmbeddingStore(index_dir)
    return [store.read_table([s], ["id"]).column("id").to_pylist() for s in store.read_manifest()["shards"]]


def published_generation(index_dir) -> int:
    return EmbeddingStore(index_dir).read_manifest()["generation"]


@pytest.fixture
def server(index_copy):
    from imgsearch.web import create_app

    live = LiveServer(create_app({"INDEX_DIR": str(index_copy)}), threads=4)  # the default RELOAD_INTERVAL
    yield live
    live.close()


def _queries(server, corpus, row_id: int, removed: set[int]) -> dict:
    """Queries by id and by image; each must succeed and know nothing of the removed images."""
    upload = (corpus / "photos" / "coffee.jpg").read_bytes()
    by_id = requests.post(f"{server.url}/api/search", json={"id": row_id, "k": 1000}, timeout=60)
    by_image = requests.post(f"{server.url}/api/search", files={"image": ("q.jpg", upload)}, data={"k": 1000},
                             timeout=60)
    info = requests.get(f"{server.url}/api/info", timeout=60)
    for r in (by_id, by_image, info):
        assert r.status_code == 200, r.text
    for r in (by_id, by_image):
        assert not removed & {hit["id"] for hit in r.json()["results"]}
    return info.json()


def test_two_publishes_while_idle_then_queries_answer_from_the_newest(index_copy, server, corpus):
    shards = shard_ids(index_copy)
    kept = shards[-1][-1]
    assert _queries(server, corpus, kept, set())["generation"] == published_generation(index_copy)
    removed = {shards[0][0], shards[1][0]}
    remove_images(index_copy, [shards[0][0]])  # retires shard 0: kept one more version
    remove_images(index_copy, [shards[1][0]])  # the version the server holds loses its files
    info = _queries(server, corpus, kept, removed)
    assert info["generation"] == published_generation(index_copy)
    assert info["count"] == sum(map(len, shards)) - 2
    gone = requests.post(f"{server.url}/api/search", json={"id": shards[0][0]}, timeout=60)
    assert gone.status_code == 404


def test_publish_pairs_with_queries_between(index_copy, server, corpus):
    removed: set[int] = set()
    for _ in range(4):
        shards = shard_ids(index_copy)
        kept = shards[-1][-1]
        pair = [shards[0][0], shards[1][0]]
        for victim in pair:
            remove_images(index_copy, [victim])
        removed |= set(pair)
        info = _queries(server, corpus, kept, removed)
        assert info["generation"] == published_generation(index_copy)


def test_a_request_raced_by_publishes_reopens_the_newest_version(index_copy):
    """An engine taken for a request before two publishes: its files go, the call is answered by the newest."""
    live = SearchEngine.open(index_copy, auto_reload=True, reload_interval=3600)
    taken = live.current()
    shards = shard_ids(index_copy)
    kept = shards[-1][-1]
    removed = {shards[0][0], shards[1][0]}
    for victim in sorted(removed):
        remove_images(index_copy, [victim])
    assert not (index_copy / "shards" / taken.manifest["shards"][0]).exists()  # its files are gone
    hits = taken.search_id(kept, k=1000)
    assert hits and not removed & {h.id for h in hits}
    assert live.current().generation == published_generation(index_copy)
    assert taken.vector(kept).shape == (taken.dim,)
