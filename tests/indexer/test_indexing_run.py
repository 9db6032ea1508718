"""The one indexing run alone: a stage passed in from outside, one listing, one shard writer.

The fake stage is a real object with the stage interface (``indexing.EmbedStage``)
whose vectors come from each file's sha256 instead of a CNN.
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pytest

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore, Row, embeddings_of, rows_to_table
from imgsearch.indexer.inputs import sources
from imgsearch.indexer.inputs.reader import AlreadyIndexed, Decoded, read_one
from imgsearch.indexer.run.indexing import IndexRun, Outcome, OutcomeStage, Outcomes, embedded_rows, run_index
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.indexer.run.summary import IndexSummary
from imgsearch.indexer.run.writer import ShardWriter
from tests.helpers import write_bad_files
from tests.pixel_model import NAME

CFG = IndexConfig(backbone=NAME, progress=False, decode_workers=0, shard_size=16, batch_size=8)
COLUMNS = ["id", "path", "label", "width", "height", "sha256"]
SUMMARY = ("found", "added", "already_indexed", "changed", "removed", "duplicates", "total")


def sha_vector(sha256: str, dim: int) -> np.ndarray:
    """(D,) a unit vector fixed by the content hash."""
    v = np.random.default_rng(int(sha256[:16], 16)).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


class ShaVectorStage(OutcomeStage):
    """Reads and decodes like the local stage, one file per ``Outcomes``; vectors from the sha256."""

    summary_type = IndexSummary
    runtime = "sha256 vectors"

    def __init__(self):
        self.run: IndexRun | None = None
        self.embedded: list[str] = []  # paths, in the order embedded
        self.finished = False

    def prepare(self, run: IndexRun) -> None:
        self.run = run

    def outcomes(self):
        backbone, ledger = self.run.backbone, self.run.ledger
        seen = set()
        for file in self.run.files:
            item = read_one(file, backbone.input_size, np.empty(0, np.uint64))
            if not hasattr(item, "sha256"):
                yield Outcomes([Outcome(file, None, item.reason)])
            elif isinstance(item, AlreadyIndexed) or ledger.is_known(item.sha256) or item.sha256 in seen:
                yield Outcomes([Outcome(file, item.sha256)])
            else:
                assert isinstance(item, Decoded)
                seen.add(item.sha256)
                self.embedded.append(file.path)
                rows = embedded_rows([file], [item.sha256], [(item.image.width, item.image.height)],
                                     sha_vector(item.sha256, backbone.dim)[None], backbone.dim)
                yield Outcomes([Outcome(file, item.sha256, embedded=True)], rows)

    def done(self) -> None:
        self.finished = True


def table(index_dir) -> pa.Table:
    store = EmbeddingStore(index_dir)
    return store.read_table(store.read_manifest()["shards"])


@pytest.fixture
def source(tmp_path, emoji_dir, photos_dir):
    src = tmp_path / "src"
    shutil.copytree(emoji_dir, src / "emoji")
    write_bad_files(src / "bad", photos_dir / "coffee.jpg")
    shutil.copy(sorted((src / "emoji" / "Flags").iterdir())[0], src / "bad" / "copy-of-a-flag.png")
    return src


def test_a_stage_passed_in_gives_the_local_stage_ids_and_rows(tmp_path, source, photos_dir, pixels):
    local_dir, fake_dir = tmp_path / "local", tmp_path / "fake"
    stage = ShaVectorStage()
    a = index_images([source], local_dir, CFG)
    b = run_index([source], fake_dir, CFG, stage)
    assert (b.added, b.duplicates, len(b.skipped)) == (60, 1, 3)
    for name in SUMMARY:
        assert getattr(a, name) == getattr(b, name), name
    assert sorted(a.skipped) == sorted(b.skipped)
    ta, tb = table(local_dir), table(fake_dir)
    for name in COLUMNS:
        assert ta.column(name).to_pylist() == tb.column(name).to_pylist(), name
    # the stage's vectors are what the shards hold, and the run told the stage it was published
    expected = np.stack([sha_vector(s, pixels.dim) for s in tb.column("sha256").to_pylist()])
    np.testing.assert_array_equal(embeddings_of(tb), expected)
    assert stage.finished and EmbeddingStore(fake_dir).read_manifest()["runtime"] == "sha256 vectors"

    # changed, new and (with sync) gone files: still the same ids as the local stage gives
    shutil.copy(photos_dir / "rocket.jpg", source / "emoji" / "new.jpg")
    victim = sorted((source / "emoji" / "Animals & Nature").iterdir())[0]
    shutil.copy(photos_dir / "chelsea.jpg", victim)
    shutil.rmtree(source / "emoji" / "Flags")
    a = index_images([source], local_dir, CFG, sync=True)
    again = ShaVectorStage()
    b = run_index([source], fake_dir, CFG, again, sync=True)
    for name in SUMMARY:
        assert getattr(a, name) == getattr(b, name), name
    assert (b.added, b.changed, b.removed) == (2, 1, 5)  # bad/ holds the indexed copy of a flag
    assert len(again.embedded) == 2  # what the index holds is not embedded again
    ta, tb = table(local_dir), table(fake_dir)
    for name in COLUMNS:
        assert ta.column(name).to_pylist() == tb.column(name).to_pylist(), name


class SkipsNewContent(ShaVectorStage):
    """Breaks the stage contract: reports a new content without embedding it."""

    def outcomes(self):
        for file in self.run.files:
            yield Outcomes([Outcome(file, "0" * 64)])


def test_a_stage_that_leaves_out_a_new_content_is_a_clear_error(tmp_path, source, pixels):
    with pytest.raises(RuntimeError, match="did not embed .*new to the index"):
        run_index([source], tmp_path / "idx", CFG, SkipsNewContent())


@pytest.mark.parametrize("sync", [False, True])
def test_sources_are_listed_once_per_run(tmp_path, source, monkeypatch, pixels, sync):
    listed = []
    real = sources._images_of

    def counting(source_, *rest):  # every listing of a source goes through here (with what it leaves out)
        listed.append(str(source_))
        return real(source_, *rest)

    monkeypatch.setattr(sources, "_images_of", counting)
    index_dir = tmp_path / "idx"
    summary = index_images([source], index_dir, CFG, sync=sync)
    assert summary.found == 64 and listed == [str(source)]
    listed.clear()
    again = run_index([source, source / "emoji"], index_dir, CFG, ShaVectorStage(), sync=sync)
    assert again.already_indexed == 61 and listed == [str(source), str(source / "emoji")]


def rows(n, dim=4, start=0):
    return [Row(i, f"/p/{i}.png", f"l{i % 3}", 10 + i, 20 + i, f"{i:064x}", np.full(dim, i, np.float32))
            for i in range(start, start + n)]


def test_one_writer_makes_the_same_shards_from_rows_and_tables(tmp_path):
    all_rows = rows(11)
    by_rows = ShardWriter(EmbeddingStore(tmp_path / "rows"), 4, shard_size=4)
    by_rows.add_many(all_rows)
    by_rows.close()

    by_tables = ShardWriter(EmbeddingStore(tmp_path / "tables"), 4, shard_size=4)
    for lo, hi in ((0, 3), (3, 9), (9, 11)):  # tables across shard boundaries
        by_tables.add_table(rows_to_table(all_rows[lo:hi], 4))
    by_tables.close()

    mixed = ShardWriter(EmbeddingStore(tmp_path / "mixed"), 4, shard_size=4)
    mixed.add_many(all_rows[:2])
    mixed.add_table(rows_to_table(all_rows[2:7], 4))
    mixed.add_many(all_rows[7:])
    mixed.close()

    assert by_rows.written == by_tables.written == mixed.written == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    for name in by_rows.written:
        reference = (tmp_path / "rows" / "shards" / name).read_bytes()
        assert (tmp_path / "tables" / "shards" / name).read_bytes() == reference, name
        assert (tmp_path / "mixed" / "shards" / name).read_bytes() == reference, name
    t = EmbeddingStore(tmp_path / "mixed").read_table(mixed.written)
    assert t.column("id").to_pylist() == list(range(11))


def test_a_failed_shard_write_surfaces_in_the_callers_thread(tmp_path):
    store = EmbeddingStore(tmp_path)
    writer = ShardWriter(store, 4, shard_size=2)
    with pytest.raises(ValueError, match="embedding dimension 3 != index dimension 4"):
        writer.add_many(rows(2, dim=3))
        writer.close()
    assert writer.written == []


def test_every_engine_is_a_stage_of_the_one_run():
    """Local, vectors, Spark images and Spark vectors implement one stage contract, and only the run
    (indexing.run_index) locks, opens and publishes the folder: no engine has a run skeleton of its own."""
    import inspect
    import re
    from pathlib import Path

    from imgsearch.indexer.run.index_vectors import VectorStage
    from imgsearch.indexer.run.indexing import EmbedStage
    from imgsearch.indexer.run.pipeline import LocalStage

    stages = [LocalStage, VectorStage]
    try:
        from imgsearch.indexer.spark.images import SparkStage
        from imgsearch.indexer.spark.vectors import SparkVectorStage
        stages += [SparkStage, SparkVectorStage]
    except ImportError:  # pragma: no cover - pyspark is part of the test extras
        pass
    contract = [name for name in dir(EmbedStage) if not name.startswith("_")] + ["summary_type", "uses_ledger"]
    for stage in stages:
        missing = [name for name in contract if not hasattr(stage, name)]
        assert not missing, (stage.__name__, missing)
        assert list(inspect.signature(stage.write).parameters) == ["self", "run"], stage.__name__
    root = Path(inspect.getfile(LocalStage)).resolve().parents[1]  # indexer/
    owners = {p.relative_to(root).as_posix() for p in root.rglob("*.py")
              if re.search(r"\b(writer_lock|open_index|finish_index)\(", p.read_text(encoding="utf-8"))}
    assert "run/indexing.py" in owners
    # heads trained by Spark MLlib are a job of their own (train-head), not an indexing run
    assert not any(o.startswith("spark/") and o != "spark/heads.py" for o in owners), owners


def test_the_rate_printed_leaves_out_a_long_start_up():
    """A cold first run spends most of its time preparing the model: the line says so and gives the rate the
    embedding ran at, not images over the whole time (0.4 img/s); a warm run's short start-up stays inside."""
    from imgsearch.indexer.run.summary import IndexSummary

    cold = IndexSummary("idx", added=80, seconds=48.0, startup_seconds=40.0).lines()[0]
    assert "in 48.0s (10.0 img/s after 40.0s of start-up" in cold and "1.7 img/s" not in cold
    warm = IndexSummary("idx", added=80, seconds=10.0, startup_seconds=1.5).lines()[0]
    assert "in 10.0s (8.0 img/s)" in warm
    nothing = IndexSummary("idx", added=0, seconds=30.0, startup_seconds=29.0).lines()[0]
    assert "indexed 0 new images in 30.0s" in nothing and "start-up" not in nothing
