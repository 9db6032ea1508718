"""The local features side table (indexer/folder/features.py) of an index made before indexing wrote it: computed
once by `imgsearch index --refresh-features`, read by the duplicates verifier instead of the files, stale rows ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from imgsearch.indexer.folder.store import IndexFormatError
from imgsearch.indexer.folder.features import FEATURES_FILE, read_features
from imgsearch.search.duplicates.keypoints import KeypointMatcher
from imgsearch.search.engine import SearchEngine
from tests.pixel_model import DUP_THRESHOLD, NAME  # noqa: F401  (registers the fake backbone)


def _index(index_dir, images, *more):
    from imgsearch.indexer import cli

    out = CliRunner().invoke(cli.index, [str(images), "--index", str(index_dir), "--backbone", NAME,
                                         "--workers", "0", "--no-progress", *more])
    assert out.exit_code == 0, out.output
    return out.output


@pytest.fixture
def copied(dup_corpus, tmp_path):
    """A copy of the duplicates corpus, indexed with the fake model (its own files: this test changes them)."""
    images = tmp_path / "images"
    shutil.copytree(dup_corpus, images)
    _index(tmp_path / "idx", images)
    (tmp_path / "idx" / FEATURES_FILE).unlink()  # an index made before indexing wrote the features
    return tmp_path / "idx", images


def _refresh(index_dir, images):
    return _index(index_dir, images, "--refresh-features")


def test_features_are_computed_once_and_read_instead_of_the_files(copied):
    index_dir, images = copied
    engine = SearchEngine.open(index_dir)
    before = KeypointMatcher(engine)
    expected = {i: before.features(i) for i in engine.ids}
    assert before.from_files == len(engine)  # no table yet: every image from its file

    out = _refresh(index_dir, images)
    assert f"{len(engine)} computed, 0 kept" in out and (index_dir / FEATURES_FILE).is_file()
    assert "0 computed" in _refresh(index_dir, images)  # nothing changed: nothing computed again

    for path in images.rglob("*"):  # the files gone: the table still answers
        if path.is_file():
            path.unlink()
    engine = SearchEngine.open(index_dir)
    after = KeypointMatcher(engine)
    for i in engine.ids:
        f = after.features(i)
        assert f is not None and np.array_equal(f.descriptors, expected[i].descriptors)
        assert np.array_equal(f.thumb, expected[i].thumb) and f.size == expected[i].size
    assert after.from_files == 0 and after.unreadable == 0
    report = engine.duplicates(DUP_THRESHOLD)
    assert report.keypoints and any(len(e) > 2 for g in report.groups for e in g.evidence[1:])


def test_a_changed_files_stale_features_are_not_used(copied):
    index_dir, images = copied
    _refresh(index_dir, images)
    engine = SearchEngine.open(index_dir)
    victim = next(iter(engine.ids))
    path = Path(engine.get(victim).path)
    Image.new("RGB", (80, 60), (200, 30, 30)).save(path, format="JPEG")  # new content, same path
    _refresh(index_dir, images)  # re-embedded (same id, new sha256): its features computed again
    engine = SearchEngine.open(index_dir)
    fresh = KeypointMatcher(engine).features(victim)
    assert fresh is not None and fresh.thumb.reshape(-1, 3).mean(0)[0] > 150  # the red picture, not the old one
    stored = read_features(index_dir)
    assert len(stored) == len(engine)


def test_a_damaged_table_says_how_to_fix_it(copied):
    index_dir, images = copied
    (index_dir / FEATURES_FILE).write_bytes(b"not parquet")
    with pytest.raises(IndexFormatError, match="refresh-features"):
        read_features(index_dir)


def test_a_refresh_holds_a_batch_of_features_at_a_time_not_the_whole_table(copied, monkeypatch):
    import gc
    import weakref

    from imgsearch.indexer.folder import features as table_module
    from imgsearch.indexer.run import features as refresh_module

    index_dir, images = copied
    monkeypatch.setattr(table_module, "BATCH", 2)
    made, alive, most = refresh_module.local_features, set(), [0]

    def counted(img):
        f = made(img)
        gc.collect()
        alive.add(id(f))
        weakref.finalize(f, alive.discard, id(f))
        most[0] = max(most[0], len(alive))
        return f

    monkeypatch.setattr(refresh_module, "local_features", counted)
    _refresh(index_dir, images)
    engine = SearchEngine.open(index_dir)
    assert len(read_features(index_dir)) == len(engine) >= 8
    assert most[0] <= 3  # a batch of 2 being written, and the one just made
