"""An index folder among its sources (issue 32): inside a source it is said, every run, in one line; an index
folder that is a source, or holds one, is refused with what to do, before anything is read or written."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from imgsearch.web.cli import main
from tests.helpers import rng_image
from tests.pixel_model import NAME

CONFIG = IndexConfig(progress=False, backbone=NAME)


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "src"
    (root / "cats").mkdir(parents=True)
    for i in range(3):
        rng_image(i).save(root / "cats" / f"{i}.png")
    return root


def _notes(summary):
    return [line for line in summary.lines() if line.startswith("note: ")]


@pytest.mark.parametrize("where", ["inside", "nested", "relative", "linked", "dotdot"])
def test_an_index_folder_inside_a_source_is_said_every_run(source, tmp_path, monkeypatch, where):
    index_dir = source / "cats" / "idx" if where == "nested" else source / "idx"
    given = index_dir
    if where == "relative":
        monkeypatch.chdir(source)
        given = "idx"
    elif where == "linked":
        index_dir.mkdir()
        (tmp_path / "link").symlink_to(index_dir)
        given = tmp_path / "link"
    elif where == "dotdot":
        given = f"{source}/cats/../idx"
    for _ in range(2):  # the first run (the folder does not exist yet) and the next
        summary = index_images([source], given, CONFIG)
        notes = _notes(summary)
        assert len(notes) == 1 and "is inside" in notes[0] and "never indexed" in notes[0], summary.lines()
    assert len(SearchEngine.open(given)) == 3


def test_an_index_folder_beside_its_source_says_nothing(source, tmp_path):
    assert _notes(index_images([source], tmp_path / "idx", CONFIG)) == []
    assert _notes(index_images([source], tmp_path / "src-index", CONFIG)) == []  # a name that starts alike


@pytest.mark.parametrize("where", ["same", "same-slash", "holds", "holds-file", "linked"])
def test_an_index_folder_that_is_or_holds_a_source_is_refused(source, tmp_path, where):
    given, src = {"same": (source, source), "same-slash": (f"{source}/", source), "holds": (tmp_path, source),
                  "holds-file": (source, source / "cats" / "1.png"), "linked": (tmp_path / "link", source)}[where]
    if where == "linked":
        (tmp_path / "link").symlink_to(source)
    with pytest.raises(InvalidInputError, match="give --index a folder outside"):
        index_images([src], given, CONFIG)
    assert not (source / "manifest.json").exists() and not (tmp_path / "manifest.json").exists()  # nothing written


def test_a_list_file_in_the_index_folder_is_not_a_reason_to_refuse(source, tmp_path):
    index_dir = tmp_path / "idx"
    index_dir.mkdir()
    listed = index_dir / "list.txt"
    listed.write_text("".join(f"{p}\n" for p in sorted((source / "cats").glob("*.png"))))
    assert index_images([listed], index_dir, CONFIG).added == 3


def test_the_command_says_it_in_one_line(source, tmp_path):
    r = CliRunner().invoke(main, ["index", str(source), "--index", str(source), "--backbone", NAME, "--no-progress"])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and r.output.startswith("Error: the index folder"), r.output
    r = CliRunner().invoke(main, ["index", str(source), "--index", str(source / "idx"), "--backbone", NAME,
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    assert f"note: the index folder {source / 'idx'} is inside {source}" in r.output
