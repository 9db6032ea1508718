"""The verifier's local features are written by indexing itself (indexer/inputs/reader.py computes them from the
picture decoded for the embedding; indexer/run/indexing.py writes them with the shards): a normal run, an
incremental run, a changed file and `imgsearch remove` keep the side table right, and `duplicates` then never
reads a file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imgsearch.indexer.folder.features import FEATURES_FILE, read_features
from imgsearch.indexer.inputs.images import load_rgb
from imgsearch.indexer.inputs.local_features import local_features
from imgsearch.search.duplicates import keypoints
from imgsearch.search.engine import SearchEngine
from tests.pixel_model import DUP_THRESHOLD, INPUT_SIZE, NAME  # noqa: F401  (registers the fake backbone)


def _cli(command, *args):
    from imgsearch.indexer import cli

    out = CliRunner().invoke(getattr(cli, command), [str(a) for a in args])
    assert out.exit_code == 0, out.output
    return out.output


def _index(index_dir, images, *more, workers="0"):
    return _cli("index", images, "--index", index_dir, "--backbone", NAME, "--workers", workers, "--no-progress",
                *more)


def _held(index_dir) -> dict[int, str]:
    """id -> sha256 of the version's rows."""
    engine = SearchEngine.open(index_dir)
    table = engine.store.read_table(engine.manifest["shards"], ["id", "sha256"])
    return dict(zip(table.column("id").to_pylist(), table.column("sha256").to_pylist()))


def _stored(index_dir) -> dict[int, str]:
    stored = read_features(index_dir)
    return {i: stored.sha256(i) for i in stored}


@pytest.fixture
def images(dup_corpus, tmp_path):
    shutil.copytree(dup_corpus, tmp_path / "images")
    return tmp_path / "images"


@pytest.mark.parametrize("workers", ["0", "2"])  # a decoding thread, and decoding processes
def test_an_index_run_writes_every_new_images_features(images, tmp_path, workers):
    index_dir = tmp_path / "idx"
    _index(index_dir, images, workers=workers)
    assert (index_dir / FEATURES_FILE).is_file()
    held = _held(index_dir)
    assert _stored(index_dir) == held  # a row per image, of the content indexed
    stored = read_features(index_dir)
    engine = SearchEngine.open(index_dir)
    for row_id in held:  # the features of the picture decoded for the embedding, as from the file
        path = engine.get(row_id).path
        img, _, _ = load_rgb(path, min_size=INPUT_SIZE)
        expected, got = local_features(img), stored[row_id][1]
        assert got.size == expected.size and len(got) > 0
        assert np.array_equal(got.descriptors, expected.descriptors) and np.array_equal(got.thumb, expected.thumb)


def test_incremental_runs_changed_files_and_remove_keep_the_table_right(images, tmp_path):
    index_dir = tmp_path / "idx"
    extra = tmp_path / "later"
    shutil.move(str(images / "edits"), extra)  # indexed by a second run
    _index(index_dir, images)
    first = _stored(index_dir)
    assert first == _held(index_dir)

    shutil.move(str(extra), images / "edits")
    _index(index_dir, images)  # incremental: the new images' rows added, the others kept
    held = _held(index_dir)
    assert _stored(index_dir) == held and len(held) > len(first)

    engine = SearchEngine.open(index_dir)
    changed = next(i for i in held if "photos" in engine.get(i).path)
    Image.new("RGB", (90, 70), (200, 30, 30)).save(engine.get(changed).path, format="JPEG")
    _index(index_dir, images)  # re-embedded, same id: its row replaced by the new picture's
    held = _held(index_dir)
    assert _stored(index_dir) == held
    assert read_features(index_dir)[changed][1].thumb.reshape(-1, 3).mean(0)[0] > 150  # red

    victim = next(i for i in held if i != changed)
    _cli("remove", "--index", index_dir, victim)
    assert _stored(index_dir) == _held(index_dir) and victim not in _stored(index_dir)

    gone = Path(SearchEngine.open(index_dir).get(changed).path)
    gone.unlink()
    _index(index_dir, images, "--sync")  # a file gone from the sources: its row leaves the table too
    assert _stored(index_dir) == _held(index_dir) and changed not in _stored(index_dir)


def test_duplicates_read_no_file_when_indexing_stored_the_features(images, tmp_path, monkeypatch):
    index_dir = tmp_path / "idx"
    _index(index_dir, images)
    reads = []
    real = keypoints.load_indexed
    monkeypatch.setattr(keypoints, "load_indexed", lambda *a, **k: reads.append(a[1]) or real(*a, **k))
    engine = SearchEngine.open(index_dir)
    report = engine.duplicates(DUP_THRESHOLD)
    assert report.keypoints and any(len(e) > 2 for g in report.groups for e in g.evidence[1:])
    assert reads == []
    (index_dir / FEATURES_FILE).unlink()  # the count is real: without the table the files are read
    SearchEngine.open(index_dir).duplicates(DUP_THRESHOLD)
    assert reads


def test_indexing_without_opencv_still_indexes(images, tmp_path, monkeypatch):
    from imgsearch.indexer.errors import MissingDependencyError
    from imgsearch.indexer.inputs import local_features as module

    def missing(*_):
        raise MissingDependencyError("no OpenCV")

    monkeypatch.setattr(module, "cv2_module", missing)
    index_dir = tmp_path / "idx"
    _index(index_dir, images)
    assert _held(index_dir) and not (index_dir / FEATURES_FILE).exists()


def test_a_table_read_in_several_chunks_gives_each_row_its_own_arrays(images, tmp_path):
    import pyarrow as pa

    from imgsearch.indexer.folder.features import StoredFeatures

    index_dir = tmp_path / "idx"
    _index(index_dir, images)
    table = pa.ipc.open_file(str(index_dir / FEATURES_FILE)).read_all()
    whole = read_features(index_dir)
    for cut in (1, 3, table.num_rows - 1):  # row groups of a large table come as chunks; a slice has an offset
        chunked = StoredFeatures(pa_concat(table.slice(0, cut), table.slice(cut)), index_dir / FEATURES_FILE)
        assert set(chunked) == set(whole)
        for row_id in whole:
            a, b = whole[row_id][1], chunked[row_id][1]
            assert whole[row_id][0] == chunked[row_id][0] and a.size == b.size
            assert np.array_equal(a.points, b.points) and np.array_equal(a.descriptors, b.descriptors)
            assert np.array_equal(a.thumb, b.thumb)


def pa_concat(*tables):
    import pyarrow as pa

    return pa.concat_tables(tables)
