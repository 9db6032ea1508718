"""``imgsearch index-vectors`` (issue 19): vectors made elsewhere go through the one indexing run.

The same run as images: ids in the file's order, copies collapsed by sha256, a
changed path keeps its id, a rerun adds nothing, bad rows are skipped with
their reason; the index records an external backbone and refuses image
queries with a clear error on every surface.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.inputs.vector_source import VectorSourceError
from imgsearch.indexer.run.index_vectors import index_vectors
from imgsearch.search.engine import SearchEngine
from imgsearch.search.errors import ExternalVectorsError, InvalidInputError
from tests.helpers import LiveServer

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
DIM = 24
CONFIG = IndexConfig(progress=False)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)  # (n, D), not unit


def _write(path: Path, paths, vectors, **columns) -> Path:
    embedding = [None if v is None else [float(x) for x in v] for v in vectors]
    pq.write_table(pa.table({"path": paths, "embedding": embedding, **columns}), path)
    return path


def _stored(index_dir: Path) -> dict[str, tuple[int, str, np.ndarray]]:
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], ["id", "path", "label", "embedding"])
    return {p: (i, lab, np.asarray(e, np.float32)) for i, p, lab, e in zip(
        *(table.column(c).to_pylist() for c in ("id", "path", "label", "embedding")))}


def test_vectors_are_indexed_in_order_normalised_with_their_labels(tmp_path):
    v = _vectors(40)
    src = _write(tmp_path / "v.parquet", [f"/x/{i}.jpg" for i in range(40)], v, label=[f"c{i % 3}" for i in range(40)])
    summary = index_vectors(src, tmp_path / "idx", CONFIG, model="test-24")
    assert summary.added == 40 and not summary.skipped
    stored = _stored(tmp_path / "idx")
    for i in range(40):
        row_id, label, e = stored[f"/x/{i}.jpg"]
        assert row_id == i and label == f"c{i % 3}"
        np.testing.assert_allclose(e, v[i] / np.linalg.norm(v[i]), atol=1e-6)
    backbone = EmbeddingStore(tmp_path / "idx").read_manifest()["backbone"]
    assert backbone["external"] is True and backbone["name"] == "external:test-24"

    engine = SearchEngine.open(tmp_path / "idx")
    hits = engine.search_vector(v[7], k=3)
    assert hits[0].id == 7 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert engine.search_id(7, k=2)[0].id != 7  # by id: the others
    with pytest.raises(ExternalVectorsError, match="query it by vector"):
        engine.search_image(np.zeros((8, 8, 3), np.uint8))


def test_a_rerun_adds_nothing_a_changed_vector_keeps_its_id_copies_collapse(tmp_path):
    v = _vectors(10)
    paths = [f"/x/{i}.jpg" for i in range(10)]
    index_vectors(_write(tmp_path / "a.parquet", paths, v), tmp_path / "idx", CONFIG)
    assert index_vectors(tmp_path / "a.parquet", tmp_path / "idx", CONFIG).added == 0

    changed = v.copy()
    changed[3] = _vectors(1, seed=9)[0]
    more = np.vstack([changed, v[5:6] * 2.0])  # a new path holding row 5's vector (scaled): the same content
    summary = index_vectors(_write(tmp_path / "b.parquet", paths + ["/y/copy-of-5.jpg"], more), tmp_path / "idx",
                            CONFIG)
    assert summary.changed == 1 and summary.added == 1 and summary.already_indexed == 10
    stored = _stored(tmp_path / "idx")
    assert stored["/x/3.jpg"][0] == 3  # re-embedded under its id
    np.testing.assert_allclose(stored["/x/3.jpg"][2], changed[3] / np.linalg.norm(changed[3]), atol=1e-6)
    assert "/y/copy-of-5.jpg" not in stored and len(stored) == 10  # a copy, not a second entry


def test_given_sha256_decide_copies(tmp_path):
    v = _vectors(4)
    sha = [hashlib.sha256(str(i).encode()).hexdigest() for i in (0, 1, 1, 3)]
    summary = index_vectors(_write(tmp_path / "v.parquet", [f"/x/{i}" for i in range(4)], v, sha256=sha),
                            tmp_path / "idx", CONFIG)
    assert summary.added == 3 and summary.duplicates == 1  # rows 1 and 2 are one content by their sha256


def test_bad_rows_are_skipped_with_their_reason_and_the_rest_indexed(tmp_path):
    v = list(_vectors(8))
    v[1] = np.full(DIM, np.nan)
    v[2] = v[2][:5]
    v[3] = None
    v[4] = np.zeros(DIM)
    paths = [f"/x/{i}" for i in range(8)]
    paths[5] = ""
    paths[7] = paths[6]
    sha = [None] * 8
    sha[0] = "not-a-digest"
    summary = index_vectors(_write(tmp_path / "v.parquet", paths, v, sha256=pa.array(sha, pa.string())),
                            tmp_path / "idx", CONFIG)
    reasons = dict(summary.skipped)
    assert summary.added == 1 and set(_stored(tmp_path / "idx")) == {"/x/6"}
    assert "64 hex digits" in reasons["/x/0"] and "NaN" in reasons["/x/1"]
    assert "5 numbers, the others 24" in reasons["/x/2"] and "no vector" in reasons["/x/3"]
    assert "all zeros" in reasons["/x/4"] and "no path" in reasons[""]
    assert "repeats row 6" in [r for p, r in summary.skipped if p == "/x/6" and "repeats" in r][0]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not parquet"), "is not a Parquet file"),
    (lambda p: pq.write_table(pa.table({"path": ["a"]}), p), "has no column embedding"),
    (lambda p: pq.write_table(pa.table({"path": ["a"], "embedding": ["x"]}), p), "list of numbers"),
    (lambda p: pq.write_table(pa.table({"path": [1], "embedding": [[1.0]]}), p), "'path' of"),
    (lambda p: None, "no such vectors file"),
])
def test_a_bad_vectors_file_is_refused_saying_what_to_change(tmp_path, make, message):
    src = tmp_path / "v.parquet"
    make(src)
    with pytest.raises(VectorSourceError, match=message):
        index_vectors(src, tmp_path / "idx", CONFIG)
    assert not (tmp_path / "idx").exists()  # nothing made of it


def test_cli_and_server_refuse_what_an_external_index_cannot_do(tmp_path, photos_dir):
    v = _vectors(12)
    src = _write(tmp_path / "v.parquet", [f"/x/{i}" for i in range(12)], v)
    out = subprocess.run([IMGSEARCH, "index-vectors", str(src), "--index", str(tmp_path / "idx"), "--model", "m1",
                          "--no-progress"], capture_output=True, text=True)
    assert out.returncode == 0 and "12 new" in out.stdout, out.stderr
    for args, message in [
        (["index", str(photos_dir), "--index", str(tmp_path / "idx")], "add to it with imgsearch index-vectors"),
        (["index-vectors", str(src), "--index", str(tmp_path / "idx"), "--model", "m2"], "--model m1"),
        (["search", "--index", str(tmp_path / "idx"), str(next(photos_dir.iterdir()))], "query it by vector"),
    ]:
        out = subprocess.run([IMGSEARCH, *args], capture_output=True, text=True)
        assert out.returncode == 1 and out.stderr.startswith("Error: ") and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr

    from imgsearch.web.app import create_app

    server = LiveServer(create_app({"INDEX_DIR": str(tmp_path / "idx"), "WARM_UP": False}))
    try:
        image = next(photos_dir.iterdir()).read_bytes()
        r = requests.post(f"{server.url}/api/search", files={"image": ("q.jpg", image)}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "image_queries_unsupported"
        r = requests.post(f"{server.url}/api/search", json={"vector": [float(x) for x in v[4]], "k": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["id"] == 4
    finally:
        server.close()
    assert issubclass(ExternalVectorsError, InvalidInputError)
