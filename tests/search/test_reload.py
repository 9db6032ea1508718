"""Serving while indexing: new versions are picked up without a restart, each answer comes from one version."""

import shutil
import threading

import pytest
import requests

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.indexer.run.remove import remove_images
from imgsearch.search.engine import SearchEngine
from tests.helpers import LiveServer, wait_until
from tests.pixel_model import NAME

CFG = IndexConfig(backbone=NAME, progress=False, decode_workers=0)  # the shared index's fake model
# requests each client makes while one version is served: two rounds of the five kinds it cycles through
REQUESTS_PER_VERSION = 10


@pytest.fixture(scope="module")
def new_batch(tmp_path_factory):
    from imgsearch.indexer.inputs.samples import export_sample

    dest = tmp_path_factory.mktemp("mnist20")
    assert export_sample("mnist", dest, limit=20) == 20
    return dest


@pytest.fixture
def index_copy(built_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(built_index[0], copy)
    return copy


def first_shard_ids(index_dir) -> list[int]:
    store = EmbeddingStore(index_dir)
    return store.read_table(store.read_manifest()["shards"][:1], ["id"]).column("id").to_pylist()


def test_reload_in_process_keeps_old_engines_working(index_copy, new_batch, corpus):
    v1 = SearchEngine.open(index_copy)
    v1.search_image(corpus / "photos" / "coffee.jpg", k=1)  # loads the model
    assert v1.reload() is v1 and not v1.changed()

    added = index_images([new_batch], index_copy, CFG).added
    assert added == 20 and v1.changed()
    v2 = v1.reload()
    assert v2.generation == v1.generation + 1 and len(v2) == len(v1) + added
    assert v2._embedder is v1._embedder  # the model is shared, not loaded again
    assert len(v1) == len(v2) - added  # the old engine is untouched

    victim, kept = first_shard_ids(index_copy)[:2]
    before = [h.id for h in v2.search_id(kept, k=10)]
    remove_images(index_copy, [victim])  # version 3 replaces the first shard
    # v2 still answers, from its own version: its FAISS file and the replaced shard are kept one more version
    assert (index_copy / v2.manifest["index_file"]).is_file()
    assert [h.id for h in v2.search_id(kept, k=10)] == before
    assert v2.search_id(victim, k=3)
    v3 = v2.reload()
    assert victim not in v3.ids and victim not in [h.id for h in v3.search_id(kept, k=len(v3) - 1)]
    remove_images(index_copy, [kept])  # version 4: now nobody serves version 2, its files go
    assert not (index_copy / v2.manifest["index_file"]).exists()
    assert not (index_copy / "shards" / v2.manifest["shards"][0]).exists()


def test_auto_reload_engine_follows_and_survives_a_damaged_version(index_copy, new_batch):
    live = SearchEngine.open(index_copy, auto_reload=True, reload_interval=0)
    first = live.current()
    assert live.current() is first  # nothing published: the same engine, no reload
    index_images([new_batch], index_copy, CFG)
    live.current()  # notices the new manifest, opens it in the background
    assert live.wait_idle(30)
    assert live.current().generation == first.generation + 1 and len(live) == len(first) + 20
    assert live.reloads == 1

    # a published version whose FAISS file is damaged: logged, not served, the previous one goes on
    store = EmbeddingStore(index_copy)
    remove_images(index_copy, first_shard_ids(index_copy)[:1])
    damaged = index_copy / store.read_manifest()["index_file"]
    damaged.write_bytes(damaged.read_bytes()[:1000])
    serving = live.current()
    assert live.wait_idle(30)
    assert live.current() is serving and live.reloads == 1
    assert "truncated or overwritten" in str(live.last_error)
    assert live.search_id(int(serving.ids[0]), k=3)
    from imgsearch.indexer.run.repair import repair_index

    repair_index(index_copy)  # a new version: picked up
    live.current()
    assert live.wait_idle(30)
    assert live.current().generation == serving.generation + 2 and live.last_error is None


def test_serving_while_indexing_every_answer_from_one_version(index_copy, new_batch, corpus):
    """Client threads query a real server while a batch is indexed and images are removed: no errors, no
    restart, and every answer is exactly one version's (all results of k=1000 queries compared)."""
    from imgsearch.web import create_app

    v1 = SearchEngine.open(index_copy)
    vec_query = v1.vector(int(v1.ids[5]))
    victims = first_shard_ids(index_copy)[1:3]  # removed in version 3
    keep_id = int(v1.ids[-1])
    upload = (corpus / "photos" / "coffee.jpg").read_bytes()

    def expected(engine: SearchEngine) -> dict:
        return {"count": len(engine),
                "vector": {h.id: h.score for h in engine.search_vector(vec_query, k=1000)},
                "id": {h.id: h.score for h in engine.search_id(keep_id, k=1000)},
                "victim": {h.id: h.score for h in engine.search_id(victims[0], k=1000)}
                if victims[0] in engine.ids else None,
                "image": [h.id for h in engine.search_image(upload, k=5)]}

    versions = {v1.generation: expected(v1)}
    server = LiveServer(create_app({"INDEX_DIR": str(index_copy), "RELOAD_INTERVAL": 0.25}), threads=4)
    stop = threading.Event()
    answers: list[list] = [[] for _ in range(4)]

    def client(n: int) -> None:
        session = requests.Session()
        i = n
        while not stop.is_set():
            kind = ("vector", "id", "victim", "image", "info")[i % 5]
            i += 1
            try:
                if kind == "vector":
                    r = session.post(f"{server.url}/api/search", json={"vector": vec_query.tolist(), "k": 1000})
                elif kind in ("id", "victim"):
                    row = keep_id if kind == "id" else victims[0]
                    r = session.post(f"{server.url}/api/search", json={"id": row, "k": 1000})
                elif kind == "image":
                    r = session.post(f"{server.url}/api/search", files={"image": ("q.jpg", upload)}, data={"k": 5})
                else:
                    r = session.get(f"{server.url}/api/info")
                answers[n].append((kind, r.status_code, r.json()))
            except Exception as exc:  # noqa: BLE001 - recorded, fails the test below
                answers[n].append((kind, None, repr(exc)))

    def served_generation() -> int:
        return requests.get(f"{server.url}/api/info", timeout=10).json()["generation"]

    def wait_served(generation: int) -> None:
        wait_until(lambda: served_generation() == generation, 30, f"the server to pick up version {generation}")

    def wait_for_requests(generation: int) -> None:
        """Every client makes REQUESTS_PER_VERSION more requests while ``generation`` is served: one
        request may have been sent before, the others all ask this version, each kind of them at least once."""
        marks = [len(log) for log in answers]
        wait_until(lambda: all(len(log) >= mark + REQUESTS_PER_VERSION for log, mark in zip(answers, marks)),
                   120, f"every client to make {REQUESTS_PER_VERSION} requests to version {generation}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    try:
        for t in threads:
            t.start()
        wait_for_requests(v1.generation)
        index_images([new_batch], index_copy, CFG)  # version 2: 20 more images
        v2 = SearchEngine.open(index_copy)
        versions[v2.generation] = expected(v2)
        wait_served(v2.generation)
        wait_for_requests(v2.generation)
        remove_images(index_copy, victims)  # version 3: a shard replaced, version 1's FAISS file deleted
        v3 = SearchEngine.open(index_copy)
        versions[v3.generation] = expected(v3)
        wait_served(v3.generation)
        wait_for_requests(v3.generation)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        server.close()

    assert sorted(versions) == [v1.generation, v1.generation + 1, v1.generation + 2]
    assert versions[v3.generation]["victim"] is None

    def same_scores(got: list, want: dict | None) -> bool:
        return want is not None and {h["id"] for h in got} == want.keys() and all(
            abs(h["score"] - want[h["id"]]) < 1e-4 for h in got)

    def versions_matching(kind: str, status, body) -> set:
        """The versions this answer is exactly consistent with."""
        if kind == "info":
            return {g for g, v in versions.items() if status == 200 and body["generation"] == g
                    and body["count"] == v["count"]}
        if kind == "victim" and status == 404:
            return {g for g, v in versions.items() if v["victim"] is None}
        if status != 200:
            return set()
        if kind == "image":
            return {g for g, v in versions.items() if [h["id"] for h in body["results"]] == v["image"]}
        return {g for g, v in versions.items() if same_scores(body["results"], v[kind])}

    for n, log in enumerate(answers):
        generation = v1.generation
        seen = set()
        for kind, status, body in log:
            match = versions_matching(kind, status, body)
            assert match, f"client {n}: {kind} answered {status} {str(body)[:300]}, not any one version's answer"
            later = {g for g in match if g >= generation}
            assert later, f"client {n}: an answer from version {sorted(match)} after one from version {generation}"
            generation = min(later)
            if kind in ("vector", "info"):
                seen.add(generation)
        # each client asked every version (wait_for_requests): its answers must say so
        assert seen == set(versions), f"client {n} saw versions {sorted(seen)}, not {sorted(versions)}"
