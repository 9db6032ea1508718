"""Outputs never become inputs (issue 30, item 4): an index folder, and what imgsearch writes (``evaluate``'s
report, ``explain --out``'s picture), are never listed as sources, however they are reached: the index folder
inside the folder it indexes (given as a relative or a linked path, nested at depth), a list naming files in
it, ``evaluate --out`` inside the source, an index folder of an older release.  What was left out is said."""

from __future__ import annotations

import os
import shutil

import pytest
from click.testing import CliRunner
from PIL import Image

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.inputs.outputs import OutputFilter, mark_output
from imgsearch.indexer.inputs.sources import iter_image_files
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from imgsearch.web.cli import main
from tests.helpers import copy_v0_index, rng_image
from tests.pixel_model import NAME

CONFIG = IndexConfig(progress=False, backbone=NAME)


@pytest.fixture
def source(tmp_path):
    """Six images in two label folders."""
    root = tmp_path / "src"
    for i in range(6):
        folder = root / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        rng_image(i).save(folder / f"{i}.png")
    return root


def _paths(index_dir) -> list[str]:
    engine = SearchEngine.open(index_dir)
    return [h.path for h in engine.get_many(engine.ids.tolist())]


def _evaluate(index_dir, *more):
    r = CliRunner().invoke(main, ["evaluate", "--index", str(index_dir), *map(str, more)])
    assert r.exit_code == 0, r.output
    return r


@pytest.mark.parametrize("where", ["inside", "nested", "relative", "linked"])
def test_an_index_folder_inside_its_source_and_its_report_are_never_indexed(source, tmp_path, monkeypatch, where):
    index_dir = {"inside": source / "idx", "nested": source / "dogs" / "deep" / "er" / "idx",
                 "relative": source / "idx", "linked": source / "idx"}[where]
    given = index_dir
    if where == "relative":
        monkeypatch.chdir(source / "cats")
        given = os.path.relpath(index_dir)
    if where == "linked":
        index_dir.mkdir()
        (tmp_path / "link").symlink_to(index_dir)
        given = tmp_path / "link"
    first = index_images([source], given, CONFIG)
    assert first.added == 6
    _evaluate(given)  # writes DIR/report/*.png
    assert list((index_dir / "report").glob("*.png"))
    again = index_images([source], given, CONFIG)
    assert again.added == 0, again
    assert all(str(index_dir) not in p and "report" not in p for p in _paths(given))
    assert any("index folder" in why for _, why in again.skipped), again.skipped
    assert len(SearchEngine.open(given)) == 6


def test_a_list_naming_files_inside_an_index_folder_leaves_them_out(source, tmp_path):
    index_dir = tmp_path / "idx"
    index_images([source], index_dir, CONFIG)
    _evaluate(index_dir)
    plots = sorted((index_dir / "report").glob("*.png"))
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{p}\n" for p in plots) + f"{source / 'cats' / '1.png'}\n")
    filt = OutputFilter()
    listed = [f.path for f in iter_image_files([lst, *plots], filt)]
    assert listed == [str(source / "cats" / "1.png")]
    assert {p for p, _ in filt.left_out} == {str(p) for p in plots}
    summary = index_images([lst], tmp_path / "other", CONFIG)
    assert summary.added == 1 and len(summary.skipped) == len(plots)


def test_an_evaluate_report_written_inside_the_source_is_never_indexed(source, tmp_path):
    index_dir = tmp_path / "idx"
    index_images([source], index_dir, CONFIG)
    _evaluate(index_dir, "--out", source / "dogs" / "report")
    written = list((source / "dogs" / "report").glob("*.png"))
    assert written
    again = index_images([source], index_dir, CONFIG, sync=True)
    assert again.added == 0 and len(SearchEngine.open(index_dir)) == 6
    assert {str(p) for p in written} <= {p for p, _ in again.skipped}


def test_a_picture_imgsearch_wrote_is_left_out_but_its_neighbours_are_not(source):
    made = source / "cats" / "explained.png"
    Image.new("RGB", (16, 16), "red").save(made)
    mark_output([made])
    filt = OutputFilter()
    paths = [f.path for f in iter_image_files([source], filt)]
    assert str(made) not in paths and len(paths) == 6
    assert [f.path for f in iter_image_files([made], OutputFilter())] == []  # named explicitly: still left out
    mark_output([source / "cats" / "other.png"])  # adding a name keeps the ones before
    assert str(made) not in [f.path for f in iter_image_files([source])]


def test_an_index_folder_of_an_older_release_inside_the_source_is_left_out(source, tmp_path):
    copy = copy_v0_index(tmp_path)
    old = source / "dogs" / "old-index"
    shutil.copytree(copy / "index", old)
    assert not (old / ".writer.lock").exists()  # known by its manifest beside its shards
    Image.new("RGB", (8, 8), "blue").save(old / "stray.png")
    filt = OutputFilter()
    paths = [f.path for f in iter_image_files([source], filt)]
    assert len(paths) == 6 and not any(str(old) in p for p in paths)
    assert [p for p, _ in filt.left_out] == [str(old)]
    shutil.rmtree(old)
