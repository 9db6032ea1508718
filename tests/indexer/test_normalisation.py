"""Vectors are normalised without overflow (issue 30, item 6).

The one normalisation point (``indexer/vectors.py``) scales each row by its largest magnitude before
squaring, so any finite row that is not all zeros becomes a unit vector, however large or small its
numbers; a row with no direction is refused, named, on every surface that takes vectors: ``index-vectors``
(a skipped row with its reason), search by vector (engine, HTTP, client).  ``verify`` reports stored
embeddings that are not unit length.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.folder.verify import verify_index
from imgsearch.indexer.run.index_vectors import index_vectors
from imgsearch.indexer.vectors import UnnormalisableVectorError, l2_normalize, undirected_rows, unit_rows
from imgsearch.search.client import SearchAPIError, SearchClient
from imgsearch.search.engine import SearchEngine
from imgsearch.search.errors import ImgsearchError, InvalidVectorError
from tests.helpers import LiveServer

DIM = 16
CONFIG = IndexConfig(progress=False)

# any float64 magnitude: subnormals, 1e-300, ordinary numbers, 1e300, and float32's extremes
_magnitudes = st.one_of(
    st.floats(min_value=-1e308, max_value=1e308, allow_nan=False, allow_infinity=False),
    st.sampled_from([5e-324, -5e-324, 1e-310, 1e-300, -1e-300, 3e38, -3e38, 3.4e38, 1e-45, 0.0]),
)


def _reference(row: np.ndarray) -> np.ndarray:
    """The direction of a float64 row, computed with exact-ish arithmetic (Python fractions would be slower)."""
    m = np.max(np.abs(row))
    u = row / m
    return u / np.sqrt(np.sum(u * u))


@settings(max_examples=300, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 40)), elements=_magnitudes))
def test_every_finite_row_with_a_direction_becomes_a_unit_vector(rows):
    out = l2_normalize(rows)
    assert out.dtype == np.float32 and out.shape == rows.shape and np.isfinite(out).all()
    bad = undirected_rows(rows)
    assert (bad == ~rows.any(axis=1)).all()  # finite rows: only all-zero ones have no direction
    for row, unit, no_direction in zip(rows, out, bad):
        if no_direction:
            assert not unit.any()
            continue
        assert np.linalg.norm(unit.astype(np.float64)) == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(unit, _reference(row), atol=1e-6)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 32)),
              elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_float32_rows_normalise_at_any_magnitude(rows):
    out = l2_normalize(rows)
    for row, unit in zip(rows, out):
        if row.any():
            assert np.linalg.norm(unit.astype(np.float64)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("row, why", [
    ([0.0] * DIM, "all zeros"),
    ([np.nan] + [1.0] * (DIM - 1), "NaN or infinity"),
    ([np.inf] * DIM, "NaN or infinity"),
    ([-np.inf, 1.0] + [0.0] * (DIM - 2), "NaN or infinity"),
])
def test_a_row_without_direction_is_refused_and_named(row, why):
    rows = np.ones((3, DIM))
    rows[1] = row
    with pytest.raises(UnnormalisableVectorError, match=f"^/x/b.jpg: the vector (holds|is) .*{why}"):
        unit_rows(rows, names=["/x/a.jpg", "/x/b.jpg", "/x/c.jpg"])
    assert issubclass(UnnormalisableVectorError, ImgsearchError)


def _extreme_vectors_file(path):
    """Rows of extreme magnitudes as float64, each a scaled copy of one direction but two."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(8, DIM))
    rows = [base[0] * 1e300 / np.abs(base[0]).max(), base[1] * 1e-300, np.full(DIM, 3e38), np.full(DIM, 1e-300),
            base[4] * 5e-320, base[5], np.zeros(DIM), np.full(DIM, 1e-320)]
    pq.write_table(pa.table({"path": [f"/x/{i}.jpg" for i in range(8)],
                             "embedding": pa.array([list(r) for r in rows], pa.list_(pa.float64()))}), path)
    return base, rows


def test_index_vectors_keeps_the_direction_of_huge_and_tiny_vectors(tmp_path):
    base, rows = _extreme_vectors_file(tmp_path / "v.parquet")
    summary = index_vectors(tmp_path / "v.parquet", tmp_path / "idx", CONFIG, model="m")
    assert summary.added == 5  # rows 2, 3 and 7 are one direction (copies of one unit vector); row 6 has none
    assert any("row 6" in why and "all zeros" in why for _, why in summary.skipped), summary.skipped
    store = EmbeddingStore(tmp_path / "idx")
    table = store.read_table(store.read_manifest()["shards"])
    stored = dict(zip(table.column("path").to_pylist(), embeddings_of(table)))
    for i in (0, 1, 2, 4, 5):  # each the direction of the row as given (5e-320s are subnormal: coarse)
        np.testing.assert_allclose(stored[f"/x/{i}.jpg"], _reference(rows[i]), atol=1e-6)
    np.testing.assert_allclose(stored["/x/0.jpg"], _reference(base[0]), atol=1e-6)
    assert verify_index(tmp_path / "idx").ok

    engine = SearchEngine.open(tmp_path / "idx")
    hits = engine.search_id(2, k=5)  # the 3e38s: a direction, so the others rank by their real cosines
    assert len(hits) == 4 and all(h.score < 0.99 for h in hits) and hits[0].score > hits[-1].score
    for tiny in ([1e-320] * DIM, [3e38] * DIM, [1e-300] * DIM):
        top = engine.search_vector(tiny, k=1)[0]
        assert top.id == 2 and top.score == pytest.approx(1.0, abs=1e-5)
    assert engine.search_vector(base[0] * 1e300 / np.abs(base[0]).max(), k=1)[0].id == 0


@pytest.mark.parametrize("vector, message", [
    ([0.0] * DIM, "all zeros"),
    ([0] * DIM, "all zeros"),
    ([-0.0] * DIM, "all zeros"),
])
def test_search_by_a_vector_without_direction_is_refused_everywhere(tmp_path, vector, message):
    _extreme_vectors_file(tmp_path / "v.parquet")
    index_vectors(tmp_path / "v.parquet", tmp_path / "idx", CONFIG, model="m")
    engine = SearchEngine.open(tmp_path / "idx")
    with pytest.raises(InvalidVectorError, match=message):
        engine.search_vector(vector, k=3)
    from imgsearch.web.app import create_app

    server = LiveServer(create_app({"INDEX_DIR": str(tmp_path / "idx"), "WARM_UP": False}))
    try:
        r = requests.post(f"{server.url}/api/search", json={"vector": vector, "k": 3}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_vector", r.text
        assert message in r.json()["error"]["message"]
        r = requests.post(f"{server.url}/api/search", json={"vector": [3e38] * DIM, "k": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(SearchAPIError, match=message):
            SearchClient(server.url).search_vector(vector, k=3)
    finally:
        server.close()


def test_verify_reports_stored_embeddings_that_are_not_unit_length(tmp_path):
    rng = np.random.default_rng(2)
    v = rng.normal(size=(6, DIM))
    pq.write_table(pa.table({"path": [f"/x/{i}.jpg" for i in range(6)], "embedding": [list(r) for r in v]}),
                   tmp_path / "v.parquet")
    index_vectors(tmp_path / "v.parquet", tmp_path / "idx", CONFIG, model="m")
    store = EmbeddingStore(tmp_path / "idx")
    manifest = store.read_manifest()
    shard = store.shard_dir / manifest["shards"][0]
    table = pq.read_table(shard)
    emb = embeddings_of(table).copy()
    emb[3] = 0  # what the old normalisation stored for [3e38] * 16
    column = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel(), pa.float32()), DIM)
    at = table.schema.get_field_index("embedding")
    pq.write_table(table.set_column(at, table.schema.field(at), column), shard)
    report = verify_index(tmp_path / "idx", checksums=False)
    assert not report.ok
    assert any("not unit length" in p.message and "[3]" in p.message for p in report.problems), report.problems
