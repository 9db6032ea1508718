"""Near-duplicate groups over synthetic vectors in real index folders: planted groups found, chaining guarded.

Vectors (indexer/synthetic.py) are written as real Parquet shards and
published through the real FAISS index, exact or approximate; planted
groups are the ground truth.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from imgsearch.indexer import ann
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.store import EmbeddingStore, Row
from imgsearch.indexer.publish.version import publish_index
from imgsearch.indexer.synthetic import ClusteredEmbeddings, plant_near_duplicates
from imgsearch.search.duplicates import pairs as pairs_module
from imgsearch.search.duplicates.groups import DEFAULT_THRESHOLD, KEEP_RULES
from imgsearch.search.engine import SearchEngine

D = 128
N = 4000
GEN = ClusteredEmbeddings(D, clusters=1000, spread=1.0, seed=4)  # no two background vectors score >= 0.87


def write_index(path, vectors, *, sizes=None, paths=None, shas=None, index_type="auto",
                shard_size=1000) -> SearchEngine:
    """An index folder of ``vectors`` (ids = rows) published with ``index_type``, opened; ``shas``: the
    files' sha256 (their pixels can then be read back, checked, as the verifier reads them)."""
    store = EmbeddingStore(path)
    store.root.mkdir(parents=True, exist_ok=True)
    manifest = {"backbone": {"name": "synthetic", "weights": None, "input_size": 0, "preprocessing": "",
                             "resize": ""},
                "dim": vectors.shape[1], "metric": "cosine", "count": 0, "shards": [], "index_file": None,
                "generation": 0}
    sizes = sizes or [(64, 48)] * len(vectors)
    paths = paths or [f"/nowhere/{i}.png" for i in range(len(vectors))]
    shas = shas or [f"{i:064x}" for i in range(len(vectors))]
    rows = [Row(i, paths[i], "", sizes[i][0], sizes[i][1], shas[i], v) for i, v in enumerate(vectors)]
    shards = [store.write_shard(rows[s:s + shard_size], vectors.shape[1]) for s in range(0, len(rows), shard_size)]
    publish_index(store, manifest, shards, options=ann.AnnOptions(index_type=index_type))
    return SearchEngine.open(path)


def planted_pairs(group: np.ndarray) -> set:
    out = set()
    for g in np.unique(group[group >= 0]):
        out.update(itertools.combinations(np.nonzero(group == g)[0].tolist(), 2))
    return out


def found_pairs(report) -> set:
    return {tuple(sorted(p)) for g in report.groups for p in itertools.combinations(g.ids, 2)}


@pytest.fixture(scope="module")
def planted():
    vectors = GEN.sample(N, seed=1)
    group = plant_near_duplicates(vectors, seed=2, share=0.15)
    return vectors, group


@pytest.mark.parametrize("index_type, method", [("auto", "exact"), ("HNSW32", "ann:HNSW32"),
                                                ("IVF16,Flat", "ann:IVF16,Flat")])
def test_planted_groups_are_found_with_few_false_pairs(tmp_path, planted, monkeypatch, index_type, method):
    vectors, group = planted
    # small blocks and a small first k: several exact blocks, and k-NN searched again for every group
    monkeypatch.setattr(pairs_module, "BLOCK_SCORES", 300 * N)
    monkeypatch.setattr(pairs_module, "QUERY_BLOCK", 700)
    monkeypatch.setattr(pairs_module, "FIRST_K", 2)
    engine = write_index(tmp_path / "idx", vectors, index_type=index_type)
    report = engine.duplicates()
    assert report.method == method and report.threshold == DEFAULT_THRESHOLD and report.images == N
    truth, found = planted_pairs(group), found_pairs(report)
    assert len(truth) > 300
    recall = len(truth & found) / len(truth)
    precision = len(truth & found) / len(found)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    for g in report.groups:
        assert g.ids[0] == g.keep and g.scores[0] == 1.0 and not g.exact
        assert all(s >= DEFAULT_THRESHOLD for s in g.scores)
        assert g.scores[1:] == sorted(g.scores[1:], reverse=True)
        assert g.paths == [f"/nowhere/{i}.png" for i in g.ids]
        got = vectors[g.ids[1:]] @ vectors[g.keep]  # each member's score against the keeper, recomputed
        np.testing.assert_allclose(g.scores[1:], got, atol=1e-4)
    assert [g.keep for g in report.groups] == sorted(g.keep for g in report.groups)
    assert [g.group for g in report.groups] == list(range(1, len(report.groups) + 1))
    assert engine.duplicates() is report  # cached for this version


def _arc(angles_degrees) -> np.ndarray:
    """Unit vectors at these angles in one plane of a D-dimensional space: cos(angle difference) apart."""
    rad = np.radians(angles_degrees)
    v = np.zeros((len(rad), D), np.float32)
    v[:, 0], v[:, 1] = np.cos(rad), np.sin(rad)
    return v


def test_a_chain_of_similar_pairs_does_not_glue_distinct_photos(tmp_path):
    # A1 ~ A2 ~ X ~ B1 ~ B2 are one connected component at 0.9 (cos 13-18 degrees >= 0.95), but
    # A1-B1 score cos 36 = 0.81: the bridge X must not make one group of the two photos
    vectors = np.vstack([_arc([0, 5, 18, 36, 41]), GEN.sample(20, seed=9)])
    names = ["A1", "A2", "X", "B1", "B2"]
    sizes = [(200, 100), (100, 100), (90, 90), (120, 120), (80, 80)] + [(10, 10)] * 20
    engine = write_index(tmp_path / "idx", vectors, sizes=sizes)
    pairs = engine.duplicates(0.9)
    assert pairs.pairs >= 5  # the chain is there: A1-A2, A1-X, A2-X, X-B1, X-B2, B1-B2
    groups = [[names[i] for i in g.ids] for g in pairs.groups]
    assert groups == [["A1", "A2", "X"], ["B1", "B2"]]  # keeper A1 (most pixels); B1 keeps the rest
    np.testing.assert_allclose(pairs.groups[0].scores, np.cos(np.radians([0, 5, 18])), atol=1e-5)
    # a plain chain A~B, B~C with A!~C: C is not glued to A
    chain = np.vstack([_arc([0, 18, 36]), GEN.sample(20, seed=9)])
    engine = write_index(tmp_path / "chain", chain, sizes=[(300, 300), (200, 200), (100, 100)] + [(10, 10)] * 20)
    assert [g.ids for g in engine.duplicates(0.9).groups] == [[0, 1]]
    # with the middle one the keeper, both pass against it: one group of three
    assert [g.ids for g in engine.duplicates(0.9, keep="smallest").groups] == [[2, 1]]
    engine = write_index(tmp_path / "mid", chain, sizes=[(100, 100), (300, 300), (100, 100)] + [(10, 10)] * 20)
    (group,) = engine.duplicates(0.9).groups
    assert group.ids[0] == 1 and sorted(group.ids[1:]) == [0, 2]


def test_keeper_rules(tmp_path):
    vectors = np.vstack([_arc([0, 2, 4, 6]), GEN.sample(10, seed=3)])
    files = [tmp_path / f"f{i}.jpg" for i in range(14)]
    for i, f in enumerate(files):
        f.write_bytes(b"x" * (100 + 10 * i))
    # ids 1 and 2 have the most pixels, 2 the larger file; 0 and 3 the fewest, 3 the larger file
    sizes = [(10, 10), (50, 40), (40, 50), (10, 10)] + [(8, 8)] * 10
    engine = write_index(tmp_path / "idx", vectors, sizes=sizes, paths=[str(f) for f in files])
    keepers = {rule: engine.duplicates(0.9, keep=rule).groups[0].keep for rule in KEEP_RULES}
    assert keepers == {"largest": 2, "smallest": 0, "oldest": 0, "newest": 3}
    files[2].unlink()  # a file gone: its size is unknown, so the tie on pixels goes to the other
    engine = SearchEngine.open(tmp_path / "idx")
    assert engine.duplicates(0.9, keep="largest").groups[0].keep == 1
    for rule in KEEP_RULES:
        assert sorted(engine.duplicates(0.9, keep=rule).groups[0].ids) == [0, 1, 2, 3]


@pytest.mark.parametrize("threshold, keep, message", [
    (0, "largest", "threshold must be a number above 0 and at most 1"),
    (1.5, "largest", "threshold must be a number above 0 and at most 1"),
    ("high", "largest", "threshold must be a number"),
    (True, "largest", "threshold must be a number"),
    (0.9, "biggest", "keep must be one of largest, smallest, oldest, newest"),
])
def test_bad_options_say_what_to_change(tmp_path, threshold, keep, message):
    engine = write_index(tmp_path / "idx", GEN.sample(30, seed=5))
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        engine.duplicates(threshold, keep)


def test_empty_and_tiny_indexes_have_no_groups(tmp_path):
    engine = write_index(tmp_path / "one", GEN.sample(1, seed=6))
    assert engine.duplicates().groups == []
    report = write_index(tmp_path / "two", _arc([0, 3])).duplicates()
    assert [g.ids for g in report.groups] == [[0, 1]] and report.to_dict()["groups"][0]["exact"] is False
