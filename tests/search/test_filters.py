"""Metadata filters inside the FAISS search (issue 17): every index type, both sides of the exact cut-over,
the filter grammar, and the metadata columns captured at indexing.

Synthetic vectors (indexer/synthetic.py) in real Parquet shards and real FAISS indexes; filtered results
are checked against brute force over the selected rows.
"""

from __future__ import annotations

import os

import faiss
import numpy as np
import pyarrow as pa
import pytest

from imgsearch.indexer.ann import AnnOptions
from imgsearch.indexer.folder.store import EmbeddingStore, schema
from imgsearch.indexer.folder.texts import text_array
from imgsearch.indexer.publish.version import publish_index
from imgsearch.indexer.synthetic import ClusteredEmbeddings
from imgsearch.search.engine import SearchEngine
from imgsearch.search.query import filter_index as filtered
from imgsearch.search.query.filters import (
    InvalidFilterError,
    UnknownLabelError,
    parse_filter,
    parse_where,
)
from tests.pixel_model import NAME

D, N = 32, 6000
LABELS = np.array(["a", "b", "c", "d"])


def _columns(n: int, rng) -> dict:
    """Seeded metadata: labels a 50 %, b 30 %, c 19 %, d 1 %; some nulls in the captured columns."""
    label = LABELS[np.searchsorted([0.5, 0.8, 0.99], rng.random(n), side="right")]
    taken = rng.integers(1_500_000_000, 1_700_000_000, n)
    return {"label": label, "width": rng.integers(100, 4000, n), "height": rng.integers(100, 4000, n),
            "file_size": rng.integers(1_000, 5_000_000, n), "taken": np.where(rng.random(n) < 0.2, -1, taken),
            "camera_make": rng.choice(["Canon", "NIKON", ""], n)}


def make_folder(path, factory: str, n: int = N, seed: int = 0):
    """An index folder of n synthetic vectors with metadata, indexed as ``factory``; -> (vectors, columns)."""
    rng = np.random.default_rng(seed)
    vectors = ClusteredEmbeddings(D, clusters=60, latent=16, seed=1).sample(n, seed)
    cols = _columns(n, rng)
    ids = np.arange(n, dtype=np.int64) * 2 + 7  # not positions: the engine maps FAISS ids to rows
    store = EmbeddingStore(path)
    store.root.mkdir(parents=True)
    table = pa.table({
        "id": ids, "path": text_array(f"/img/{'x' if i % 3 else 'y'}/{i}.jpg" for i in range(n)),
        "label": text_array(cols["label"].tolist()), "width": pa.array(cols["width"], pa.int32()),
        "height": pa.array(cols["height"], pa.int32()), "sha256": [f"{i:064x}" for i in ids],
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), D),
        "file_size": cols["file_size"], "mtime": pa.nulls(n, pa.int64()),
        "taken": pa.array(np.where(cols["taken"] < 0, None, cols["taken"]).tolist(), pa.int64()),
        "camera_make": [v or None for v in cols["camera_make"]], "camera_model": pa.nulls(n, pa.string()),
    }, schema=schema(D))
    shards = [store.write_table(table.slice(s, 2000)) for s in range(0, n, 2000)]
    manifest = {"backbone": {"name": "synthetic", "weights": None, "input_size": 0, "preprocessing": "",
                             "resize": ""}, "dim": D, "metric": "cosine", "count": 0, "shards": [],
                "index_file": None, "generation": 0}
    publish_index(store, manifest, shards, options=AnnOptions(index_type=factory))
    return ids, vectors, cols


def exact_filtered(vectors, ids, mask, queries, k):
    rows = np.flatnonzero(mask)
    _, found = faiss.knn(queries, vectors[rows], min(k, len(rows)), metric=faiss.METRIC_INNER_PRODUCT)
    return ids[rows][found]


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF32,Flat", "IVF32,SQ8", "IVF32,PQ8x4fs,RFlat"])
@pytest.mark.parametrize("exact_max", [filtered.EXACT_MAX, 0], ids=["exact-cut-over", "approximate"])
def test_filtered_search_returns_k_selected_results_for_every_index_type(tmp_path, monkeypatch, factory,
                                                                         exact_max):
    monkeypatch.setattr(filtered, "EXACT_MAX", exact_max)  # 0: every selection goes through the ANN index
    ids, vectors, cols = make_folder(tmp_path / "idx", factory)
    engine = SearchEngine.open(tmp_path / "idx")
    queries = ClusteredEmbeddings(D, clusters=60, latent=16, seed=1).sample(30, 99)
    cases = [({"label": ["b", "c"]}, np.isin(cols["label"], ["b", "c"])),  # 49 %
             ({"label": "d", "width": {">=": 200}}, (cols["label"] == "d") & (cols["width"] >= 200)),  # ~1 %
             ({"camera_make": "Canon", "taken": {"<": "2020-01-01"}},
              (cols["camera_make"] == "Canon") & (cols["taken"] >= 0) & (cols["taken"] < 1_577_836_800))]
    for flt, mask in cases:
        truth = exact_filtered(vectors, ids, mask, queries, 10)
        found = [[h.id for h in engine.search_vector(q, 10, filter=flt)] for q in queries]
        assert all(len(f) == 10 for f in found), (flt, [len(f) for f in found])
        assert set(np.concatenate(found)) <= set(ids[mask]), f"{flt}: a hit outside the selection"
        recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
        assert recall >= 0.9, f"{factory} {flt}: recall@10 {recall:.3f} against exact filtered search"


def test_a_selection_smaller_than_k_returns_all_of_it_and_an_empty_one_nothing(tmp_path):
    ids, vectors, cols = make_folder(tmp_path / "idx", "HNSW32", n=3000)
    engine = SearchEngine.open(tmp_path / "idx")
    few = np.flatnonzero(cols["label"] == "d")[:3]
    prefixes = [f"/img/{'x' if i % 3 else 'y'}/{i}.jpg" for i in few]
    hits = engine.search_vector(vectors[0], 10, filter={"path_prefix": prefixes})
    assert sorted(h.id for h in hits) == sorted(ids[few].tolist())
    assert engine.search_vector(vectors[0], 10, filter={"width": {">": 10_000}}) == []
    assert engine.filtered.select(parse_filter({"width": {">": 10_000}})).count == 0
    # more like this under a filter: itself excluded, k others
    hits = engine.search_id(int(ids[5]), 5, filter={"path_prefix": "/img/x/"})
    assert len(hits) == 5 and int(ids[5]) not in [h.id for h in hits]
    assert all(h.path.startswith("/img/x/") for h in hits)


def test_unknown_labels_are_refused_with_the_labels_there_are(tmp_path):
    make_folder(tmp_path / "idx", "Flat", n=500)
    engine = SearchEngine.open(tmp_path / "idx")
    with pytest.raises(UnknownLabelError, match=r"label 'zebra'; the labels are: 'a', 'b', 'c', 'd'"):
        engine.search_vector(np.ones(D), 5, filter={"label": ["a", "zebra"]})


@pytest.mark.parametrize("raw, message", [
    ({"colour": "red"}, r"unknown filter field 'colour'; valid fields: label, path_prefix, width"),
    ({"width": {"~": 3}}, r"unknown operator '~' for width"),
    ({"width": "wide"}, r"width needs a finite number such as 640 \(at most 1e\+18 either way\), got 'wide'"),
    ({"label": {">=": "a"}}, r"label takes only '='"),
    ({"label": [3]}, r"label needs text values, got 3"),
    ({"taken": {">=": "last year"}}, r"taken needs an ISO 8601 date or date-time \(2025-01-31, "),
    ({"label": []}, r"label needs at least one value"),
    ({"width": {}}, r"width needs a bound"),
    (["label", "cats"], r"filter must be a JSON object"),
    ({"width": {">": float("nan")}}, r"width needs a finite number"),
])
def test_bad_filters_say_what_to_change(raw, message):
    with pytest.raises(InvalidFilterError, match=message):
        parse_filter(raw)


def test_where_grammar():
    flt = parse_where(["label=cats,dogs", "taken>=2020-01-01", "width<640", "path_prefix=/a,b/"])
    assert flt.describe() == {"label": ["cats", "dogs"], "path_prefix": ["/a,b/"], "width": {"<": 640},
                              "taken": {">=": "2020-01-01T00:00:00Z"}}
    assert parse_where(["mtime>2023-11-14T22:13:20Z"]).conditions[0].value == 1.7e9
    for bad, message in [("size>3", "unknown filter field 'size'"), ("label", "write FIELD OP VALUE"),
                         ("width>=", "has no value"), ("camera_make<x", "takes only '='")]:
        with pytest.raises(InvalidFilterError, match=message):
            parse_where([bad])


# ---------------------------------------------------------------- metadata captured at indexing
def _photo(path, colour, exif=None, mtime=None):
    from PIL import Image

    Image.new("RGB", (64, 48), colour).save(path, **({"exif": exif} if exif is not None else {}))
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_indexing_captures_size_times_and_camera_and_survives_hostile_exif(tmp_path):
    from PIL import Image

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.folder.store import FILE_METADATA_FORMAT_VERSION
    from imgsearch.indexer.folder.verify import verify_index
    from imgsearch.indexer.run.pipeline import index_images

    src = tmp_path / "src"
    (src / "cam").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D\x00\x01"
    exif.get_ifd(0x8769)[0x9003] = "2021:06:01 12:30:00"
    _photo(src / "cam" / "a.jpg", "red", exif, mtime=1_600_000_000)
    placeholder = Image.Exif()
    placeholder.get_ifd(0x8769)[0x9003] = "0000:00:00 00:00:00"  # what some cameras write without a clock
    _photo(src / "cam" / "b.jpg", "green", placeholder)
    _photo(src / "c.jpg", "blue", b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + bytes(range(256)) * 4)  # hostile
    _photo(src / "d.png", "yellow")
    summary = index_images([src], tmp_path / "idx", IndexConfig(backbone=NAME, progress=False, decode_workers=0))
    assert summary.added == 4 and not summary.skipped

    engine = SearchEngine.open(tmp_path / "idx")
    assert engine.manifest["format_version"] == FILE_METADATA_FORMAT_VERSION
    assert verify_index(tmp_path / "idx").ok
    rows = {os.path.basename(p): r for p, r in zip(
        engine.store.read_columns(engine.manifest["shards"], ["path"]).column("path").to_pylist(),
        engine.store.read_columns(engine.manifest["shards"], ["file_size", "mtime", "taken", "camera_make",
                                                               "camera_model"]).to_pylist())}
    assert rows["a.jpg"] == {"file_size": os.path.getsize(src / "cam" / "a.jpg"), "mtime": 1_600_000_000,
                             "taken": 1_622_550_600, "camera_make": "Canon", "camera_model": "EOS 5D"}
    assert rows["b.jpg"]["taken"] is None and rows["b.jpg"]["camera_make"] is None
    assert rows["c.jpg"]["taken"] is None and rows["c.jpg"]["file_size"] == os.path.getsize(src / "c.jpg")
    assert rows["d.png"]["mtime"] == int(os.stat(src / "d.png").st_mtime)

    def names(flt):
        return sorted(os.path.basename(h.path) for h in engine.search_vector(engine.vector(0), 10, filter=flt))

    assert names({"camera_make": "Canon", "taken": {">=": "2021-06-01", "<": "2021-06-02"}}) == ["a.jpg"]
    assert names({"mtime": {"<=": "2020-09-13T12:26:40Z"}}) == ["a.jpg"]
    assert names({"label": ["cam"], "path_prefix": str(src / "cam" / "b")}) == ["b.jpg"]
    assert names({"file_size": {">=": 1}, "width": 64, "height": {">": 47}}) == ["a.jpg", "b.jpg", "c.jpg", "d.png"]

    # a file touched but not changed: a run leaves its metadata, --refresh-metadata captures it again
    os.utime(src / "cam" / "a.jpg", (1_500_000_000, 1_500_000_000))
    again = index_images([src], tmp_path / "idx", IndexConfig(backbone=NAME, progress=False, decode_workers=0))
    assert again.refreshed == 0
    assert SearchEngine.open(tmp_path / "idx").search_vector(engine.vector(0), 10, filter=["mtime<2019-02-12T19:33:20Z"]) == []
    from click.testing import CliRunner

    from imgsearch.indexer.cli import index

    run = CliRunner().invoke(index, [str(src), "--index", str(tmp_path / "idx"), "--refresh-metadata",
                                     "--workers", "0", "--no-progress"])
    assert run.exit_code == 0, run.output
    assert "indexed 0 new images" in run.output and "file metadata captured again for 4 indexed images" in run.output
    refreshed = SearchEngine.open(tmp_path / "idx")
    assert refreshed.generation == engine.generation, "metadata alone does not rebuild the FAISS index"
    assert [os.path.basename(h.path) for h in refreshed.search_vector(engine.vector(0), 10,
                                                                      filter=["mtime<2019-02-12T19:33:20Z"])] == ["a.jpg"]
    assert verify_index(tmp_path / "idx").ok


def test_an_index_of_the_previous_release_reads_nulls_and_new_files_get_metadata(tmp_path, lite0):
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.folder.verify import verify_index
    from imgsearch.indexer.run.pipeline import index_images
    from tests.helpers import copy_v0_index

    root = copy_v0_index(tmp_path)
    old = SearchEngine.open(root / "index")
    assert old.manifest["format_version"] == 1
    query = old.vector(int(old.ids[0]))
    assert old.search_vector(query, 5, filter={"file_size": {">=": 0}}) == []  # null: never matches
    assert all(h.label == "3" for h in old.search_vector(query, 5, filter={"label": "3"}))

    config = IndexConfig(progress=False, decode_workers=0)
    index_images([root / "images", root / "more"], root / "index", config)  # new files only get metadata
    engine = SearchEngine.open(root / "index")
    assert engine.manifest["format_version"] == 4 and verify_index(root / "index").ok
    sized = engine.search_vector(query, 100, filter={"file_size": {">=": 0}})
    assert sorted(h.path for h in sized) == sorted(str(p) for p in (root / "more").rglob("*.png"))
    threes = engine.search_vector(query, 10, filter={"label": "3"})  # old rows and new ones alike
    assert len(threes) == 8 and {h.label for h in threes} == {"3"}
