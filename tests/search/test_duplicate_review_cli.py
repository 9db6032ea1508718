"""Reviewing duplicate groups from the command line: ``imgsearch not-duplicates`` (mark, unmark, list),
``imgsearch duplicates --json --out FILE`` and ``--remove-others`` (the index only, never the files), run
through the root group as a person runs them, on a copy of the fake model's duplicates index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from imgsearch.search.engine import SearchEngine
from imgsearch.web.cli import main
from tests.pixel_model import DUP_THRESHOLD


@pytest.fixture
def index_dir(dup_index, tmp_path) -> Path:
    copy = tmp_path / "idx"
    shutil.copytree(dup_index[0], copy)
    return copy


def _run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def _groups(index_dir, *more) -> list[dict]:
    out = _run("duplicates", "--index", index_dir, "--threshold", DUP_THRESHOLD, "--no-keypoints", "--json", *more)
    assert out.exit_code == 0, out.output
    return [json.loads(line) for line in out.output.splitlines()]


def test_mark_list_and_unmark_from_the_command_line(index_dir):
    near = [g for g in _groups(index_dir) if not g["exact"]]
    pair = near[0]["ids"]
    out = _run("not-duplicates", "--index", index_dir, *pair)
    assert out.exit_code == 0 and "marked 1 of 1 pairs" in out.output, out.output
    assert pair not in [g["ids"] for g in _groups(index_dir)] and len(_groups(index_dir)) == len(near) + 1
    out = _run("not-duplicates", "--index", index_dir, "--list", "--json")
    [listed] = [json.loads(line) for line in out.output.splitlines()]
    assert sorted(listed["ids"]) == sorted(pair) and listed["paths"] and len(listed["sha256"]) == 2
    out = _run("not-duplicates", "--index", index_dir, "--unmark", "--json", *pair)
    assert out.exit_code == 0 and json.loads(out.output) == {"pairs": 1, "changed": 1, "total": 0}
    assert pair in [g["ids"] for g in _groups(index_dir)]
    out = _run("not-duplicates", "--index", index_dir, "--list")
    assert out.exit_code == 0 and out.output == f"no pairs are marked in {index_dir}\n"
    out = _run("not-duplicates", "--index", index_dir, "--list", "3", "4")
    assert out.exit_code == 2 and "--list takes no IDS" in out.output


@pytest.mark.parametrize("ids, words", [
    (["3"], "two different ids"), (["3", "3"], "two different ids"), (["0", "99999"], "no image with id 99999"),
    (["0", "x"], "id must be an integer"), (["0", "1.5"], "id must be an integer")])
def test_bad_ids_are_one_error_line(index_dir, ids, words):
    out = _run("not-duplicates", "--index", index_dir, *ids)
    assert out.exit_code == 1 and out.output.startswith("Error: ") and words in out.output, out.output
    assert "Traceback" not in out.output
    out = _run("not-duplicates", "--index", index_dir, "--json", *ids)  # a program gets the error's kind too
    assert json.loads(out.output.splitlines()[0])["error"]["message"]


def test_exact_copies_cannot_be_marked_they_are_one_image(index_dir):
    exact = next(g for g in _groups(index_dir) if g["exact"])
    out = _run("not-duplicates", "--index", index_dir, *exact["ids"])
    assert out.exit_code == 1 and "two different ids" in out.output


def test_groups_are_written_to_a_file(index_dir, tmp_path):
    target = tmp_path / "groups.jsonl"
    out = _run("duplicates", "--index", index_dir, "--threshold", DUP_THRESHOLD, "--no-keypoints", "--json",
               "--out", target)
    assert out.exit_code == 0 and f"wrote 6 groups to {target}" in out.output
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines == _groups(index_dir)
    out = _run("duplicates", "--index", index_dir, "--out", target)
    assert out.exit_code == 2 and "add --json" in out.output


def test_remove_others_lists_asks_and_removes_from_the_index_only(index_dir):
    engine = SearchEngine.open(index_dir)
    groups = _groups(index_dir)
    others = [(i, p) for g in groups if not g["exact"] for i, p in zip(g["ids"][1:], g["paths"][1:])]
    args = ("duplicates", "--index", index_dir, "--threshold", DUP_THRESHOLD, "--no-keypoints", "--remove-others")
    out = _run(*args, input="n\n")
    assert out.exit_code == 1 and "Aborted" in out.output
    for row_id, path in others:  # every member to be removed listed, with its path, before the question
        assert f"id {row_id:<8d} {path}" in out.output
    assert len(SearchEngine.open(index_dir)) == len(engine)  # nothing removed
    out = _run(*args, input="y\n")
    assert out.exit_code == 0 and f"removed {len(others)} images" in out.output, out.output
    after = SearchEngine.open(index_dir)
    assert len(after) == len(engine) - len(others) and not set(after.ids) & {i for i, _ in others}
    assert all(Path(p).is_file() for _, p in others)  # the files stay on disk
    assert [g for g in _groups(index_dir) if not g["exact"]] == []  # the groups are gone
    out = _run(*args, "--yes")
    assert out.exit_code == 0 and "no near-duplicate members to remove" in out.output


def test_remove_others_lists_the_exact_copies_that_leave_with_a_removed_image(index_dir):
    # keep the smallest: the edit of chelsea is kept, and the indexed chelsea (with its exact copy) removed
    groups = _groups(index_dir, "--keep", "smallest")
    copies = {g["keep"]: g["paths"][1:] for g in groups if g["exact"]}
    removed = [i for g in groups if not g["exact"] for i in g["ids"][1:]]
    [(row_id, [copy])] = [(i, copies[i]) for i in removed if i in copies]
    out = _run("duplicates", "--index", index_dir, "--threshold", DUP_THRESHOLD, "--no-keypoints", "--keep",
               "smallest", "--remove-others", input="n\n")
    listed = out.output.split("to remove from the index")[1].split(f"id {row_id:<8d}")[1].splitlines()
    assert listed[1] == f"     (its exact copy {copy})"
