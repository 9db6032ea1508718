import hashlib
import json
import shutil

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import (
    EmbeddingStore,
    IndexFormatError,
    Row,
    embeddings_of,
    schema,
)
from imgsearch.indexer.inputs.reader import read_images
from imgsearch.indexer.inputs.sources import iter_image_files
from imgsearch.indexer.run.pipeline import embed_batches, index_images
from imgsearch.indexer.run.writer import ShardWriter
from tests.helpers import write_bad_files
from tests.pixel_model import DIM, NAME, SPEC

CFG = IndexConfig(backbone=NAME, progress=False)


def _table(index_dir):
    store = EmbeddingStore(index_dir)
    return store.read_table(store.read_manifest()["shards"])


def test_sources_labels_and_order(corpus):
    files = list(iter_image_files([corpus]))
    labels = {f.label for f in files}
    assert "photos" in labels and "emoji/Flags" in labels
    assert [f.path for f in iter_image_files([corpus])] == [f.path for f in files]  # deterministic
    flags = [f.path for f in files if f.label == "emoji/Flags"]
    assert flags == sorted(flags) and len(flags) == 6
    # a file named twice, or inside a folder also named, is listed once
    assert len(list(iter_image_files([corpus, corpus / "photos", corpus / "photos" / "coffee.jpg"]))) == len(files)
    assert not any(f.path.endswith(".txt") for f in files)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list(iter_image_files([corpus / "missing"]))


def test_read_stage_alone(corpus):
    items = list(read_images(iter_image_files([corpus / "bad"]), 32, workers=1))
    reasons = {type(i).__name__ for i in items}
    assert reasons == {"Skipped"} and len(items) == 3


@pytest.mark.parametrize("workers, chunk, window", [(2, 3, 4), (1, 8, 256), (0, 8, 2)])
def test_read_stage_keeps_input_order_whatever_the_chunks(corpus, workers, chunk, window):
    """Processes are handed several files at once; results still come back one per file, in order,
    bad files included, with at most ``window`` files in flight."""
    files = list(iter_image_files([corpus]))
    items = list(read_images(iter(files), 32, workers=workers, chunk=chunk, window=window))
    assert [i.file.path for i in items] == [f.path for f in files]
    assert {type(i).__name__ for i in items} == {"Decoded", "Skipped"}


def test_a_small_run_is_decoded_by_threads_and_a_large_one_by_processes(corpus, monkeypatch):
    """Starting a decoding process (spawn) costs about a second, more than it saves on a few dozen files: a run
    of at most SMALL_RUN listed files is decoded by this process's threads (Pillow and OpenCV release the GIL),
    a larger one, or an unsized stream, by processes; the items are the same either way, in order."""
    import concurrent.futures

    from imgsearch.indexer.inputs import reader

    started = []

    class Counting(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            started.append(args[0] if args else kwargs.get("max_workers"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(reader, "ProcessPoolExecutor", Counting)
    files = list(iter_image_files([corpus]))
    assert reader.SMALL_RUN < len(files) * 4 and len(files[: reader.SMALL_RUN]) == reader.SMALL_RUN
    small = list(read_images(files[: reader.SMALL_RUN], 32))
    assert started == []
    by_process = list(read_images(files[: reader.SMALL_RUN], 32, workers=1))
    assert started == [1]
    assert [(i.file.path, type(i).__name__, getattr(i, "sha256", None)) for i in small] == \
        [(i.file.path, type(i).__name__, getattr(i, "sha256", None)) for i in by_process]
    decoded = [(a, b) for a, b in zip(small, by_process) if type(a).__name__ == "Decoded"]
    assert decoded and all(np.array_equal(a.image.array, b.image.array) for a, b in decoded)
    list(read_images(iter(files[: reader.SMALL_RUN]), 32))  # a stream: its length is not known
    list(read_images(files * 2, 32))  # more than SMALL_RUN files
    assert len(started) == 3


def test_embed_stage_alone():
    calls = []

    def fake_embed(batch):  # (b, S, S, 3) -> (b, 2); stands in only for the arithmetic
        calls.append(len(batch))
        return np.ones((len(batch), 2), np.float32)

    class Item:
        def __init__(self):
            self.image = type("D", (), {"array": np.zeros((4, 4, 3), np.uint8)})()

    out = list(embed_batches((Item() for _ in range(7)), fake_embed, 3))
    assert len(out) == 7 and calls == [3, 3, 1]


def test_shard_writer_alone(tmp_path):
    store = EmbeddingStore(tmp_path)
    writer = ShardWriter(store, 4, shard_size=2)
    for i in range(5):
        writer.add(Row(i, f"/p/{i}.png", "x", 10, 10, f"{i:064x}", np.full(4, i, np.float32)))
    writer.close()
    assert writer.written == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    t = store.read_table(writer.written)
    assert t.schema == schema(4)
    assert t.column("id").to_pylist() == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(embeddings_of(t)[:, 0], [0, 1, 2, 3, 4])


def test_index_folder_with_bad_files(built_index, corpus):
    index_dir, summary = built_index
    # the three bad files are skipped with their reasons, everything else is indexed
    skipped = {p.split("/")[-1]: r for p, r in summary.skipped}
    assert set(skipped) == {"empty.jpg", "truncated.jpg", "notes.jpg"}
    expected = write_bad_files(corpus / "unused", corpus / "photos" / "coffee.jpg")
    shutil.rmtree(corpus / "unused")
    for name, reason in expected.items():
        assert reason in skipped[name]
    log = (index_dir / "skipped.log").read_text()
    assert log.count("\n") == 3 and "truncated.jpg" in log
    good = len(list(iter_image_files([corpus]))) - 3
    assert summary.added + summary.duplicates == good
    assert summary.total == summary.added == len(_table(index_dir))


def test_shards_hold_the_schema_and_metadata(built_index, corpus):
    index_dir, summary = built_index
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    assert len(manifest["shards"]) == -(-summary.added // 25)  # shard_size=25
    for shard in store.shard_paths(manifest["shards"]):
        assert pq.read_schema(shard).equals(schema(DIM))
    t = _table(index_dir)
    rows = t.to_pylist()
    assert sorted(r["id"] for r in rows) == list(range(len(rows)))
    coffee = next(r for r in rows if r["path"].endswith("photos/coffee.jpg"))
    assert (coffee["width"], coffee["height"]) == (600, 400)
    assert coffee["label"] == "photos"
    assert coffee["sha256"] == hashlib.sha256((corpus / "photos/coffee.jpg").read_bytes()).hexdigest()
    emb = embeddings_of(t)
    assert emb.shape == (len(rows), DIM) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_manifest_and_faiss_index(built_index):
    index_dir, summary = built_index
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["backbone"]["name"] == NAME
    assert manifest["dim"] == DIM and manifest["count"] == summary.total
    assert manifest["backbone"]["preprocessing"] == SPEC.preprocessing
    for lib in ("tensorflow", "faiss", "pyarrow", "pillow", "numpy"):
        assert manifest["versions"][lib]
    assert manifest["created"] and manifest["metric"] == "cosine"
    index = faiss.read_index(str(index_dir / manifest["index_file"]))
    assert index.ntotal == summary.total and index.d == DIM
    t = _table(index_dir)
    emb, ids = embeddings_of(t), t.column("id").to_numpy()
    scores, found = index.search(emb[:5], 1)
    np.testing.assert_array_equal(found[:, 0], ids[:5])  # FAISS ids are the rows' ids
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_rerun_embeds_nothing_and_adding_three_embeds_three(tmp_path, emoji_dir, photos_dir, monkeypatch):
    src = tmp_path / "src"
    shutil.copytree(emoji_dir, src)
    index_dir = tmp_path / "idx"
    first = index_images([src], index_dir, CFG)
    before = {r["path"]: r["id"] for r in _table(index_dir).select(["path", "id"]).to_pylist()}

    embedded = []
    from imgsearch.indexer.model import embedder as embedder_module

    real_embed = embedder_module.Embedder.embed
    monkeypatch.setattr(embedder_module.Embedder, "embed",
                        lambda self, images: embedded.append(len(images)) or real_embed(self, images))
    again = index_images([src], index_dir, CFG)
    assert again.added == 0 and sum(embedded) == 0
    assert again.already_indexed == first.added
    assert {r["path"]: r["id"] for r in _table(index_dir).select(["path", "id"]).to_pylist()} == before

    for name in ("astronaut.jpg", "rocket.jpg", "retina.jpg"):
        shutil.copy(photos_dir / name, src / name)
    third = index_images([src], index_dir, CFG)
    assert third.added == 3 and sum(embedded) == 3
    after = {r["path"]: r["id"] for r in _table(index_dir).select(["path", "id"]).to_pylist()}
    assert {p: i for p, i in after.items() if p in before} == before  # old ids unchanged
    assert sorted(i for p, i in after.items() if p not in before) == [len(before), len(before) + 1,
                                                                        len(before) + 2]


def test_other_backbone_on_existing_index_is_refused(built_index, corpus):
    index_dir, _ = built_index
    with pytest.raises(IndexFormatError, match=f"built with backbone {NAME}.*--backbone"):
        index_images([corpus / "photos"], index_dir, IndexConfig(backbone="efficientnet-lite2", progress=False))
