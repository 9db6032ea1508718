"""Duplicates of a real index (photos, their edits and byte-for-byte copies, real model): groups,
exact copies recorded by indexing and kept true by later runs, removal, sync and repair; the command."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.verify import verify_index
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.indexer.run.remove import remove_images
from imgsearch.indexer.run.repair import repair_index
from imgsearch.search.cli import commands as cli
from imgsearch.search.engine import SearchEngine
from tests.pixel_model import DUP_THRESHOLD, NAME

EDITED = ("astronaut", "rocket", "chelsea", "coffee")
THRESHOLD = DUP_THRESHOLD  # the fake model's: edits score 0.95-1 against their originals, other photos under 0.9


def _name(path: str) -> str:
    return Path(path).name


def test_near_duplicates_and_exact_copies_of_a_real_index(dup_index):
    index_dir, summary = dup_index
    assert summary.added == 12 and summary.duplicates == 2  # the two copies were not embedded
    report = SearchEngine.open(index_dir).duplicates(THRESHOLD)
    near = [g for g in report.groups if not g.exact]
    exact = [g for g in report.groups if g.exact]
    assert sorted(tuple(_name(p) for p in g.paths) for g in near) == sorted(
        (f"{n}.jpg" if n != "chelsea" else "chelsea-copy.jpg", f"{n}-edit.jpg") for n in EDITED)
    assert all(len(g.ids) == 2 and g.scores[0] == 1.0 and THRESHOLD <= g.scores[1] < 1 for g in near)
    # listing order puts copies/ first: its files are the indexed ones, the photos/ files their copies
    assert sorted([_name(p) for p in g.paths] for g in exact) == [["chelsea-copy.jpg", "chelsea.jpg"],
                                                                   ["retina-copy.jpg", "retina.jpg"]]
    for g in exact:
        assert g.ids == [g.keep, g.keep] and g.scores == [1.0, 1.0]
    assert [(g.keep, g.exact) for g in report.groups] == sorted((g.keep, g.exact) for g in report.groups)
    assert [g.group for g in report.groups] == list(range(1, 7))
    assert report.method == "exact"


def test_the_command_prints_json_csv_and_a_table(dup_index, tmp_path):
    index_dir, _ = dup_index
    runner = CliRunner()
    out = runner.invoke(cli.duplicates, ["--index", str(index_dir), "--threshold", str(THRESHOLD), "--json"])
    assert out.exit_code == 0, out.output
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert len(lines) == 6 and set(lines[0]) == {"group", "ids", "paths", "scores", "keep", "exact", "evidence",
                                                  "sizes"}
    assert [line["group"] for line in lines] == list(range(1, 7)) and sum(line["exact"] for line in lines) == 2
    for line in lines:  # each member's evidence: what decided, and (verification on) the check's numbers
        assert len(line["evidence"]) == len(line["ids"]) and line["evidence"][0]["decided_by"] == "keeper"
        for score, found in zip(line["scores"][1:], line["evidence"][1:]):
            assert found["cosine"] == score
            if line["exact"]:
                assert found["decided_by"] == "sha256"
            else:  # below the threshold only when a check promoted it, and then the check says so
                assert found["check"] in ("keypoints", "dense", "none") and "region" in found
                assert found["decided_by"] == ("cosine" if score >= THRESHOLD else found["check"])
                assert found["decided_by"] == "cosine" or found["match"] is True

    target = tmp_path / "dups.csv"
    out = runner.invoke(cli.duplicates, ["--index", str(index_dir), "--threshold", str(THRESHOLD), "--csv",
                                         str(target), "--keep", "smallest"])
    assert out.exit_code == 0 and "6 groups of duplicates" in out.output, out.output
    rows = list(csv.DictReader(target.open()))
    assert len(rows) == 12 and sum(r["keeper"] == "True" for r in rows) == 6
    assert {r["decided_by"] for r in rows} <= {"keeper", "cosine", "keypoints", "dense", "sha256"}
    assert all(r["check"] in ("keypoints", "dense", "none") for r in rows if r["decided_by"] == "cosine")
    edits = {r["path"] for r in rows if r["keeper"] == "True" and r["exact"] == "False"}
    assert {_name(p) for p in edits} == {f"{n}-edit.jpg" for n in EDITED}  # the smaller ones kept
    assert all(int(r["width"]) > 0 and int(r["height"]) > 0 and int(r["file_size"]) > 0 for r in rows)

    out = runner.invoke(cli.duplicates, ["--index", str(index_dir), "--threshold", str(THRESHOLD), "--limit", "2"])
    assert out.exit_code == 0 and "6 groups of duplicates, 2 shown" in out.output
    assert "group 1: keep id" in out.output and "group 3" not in out.output

    out = runner.invoke(cli.duplicates, ["--index", str(index_dir), "--threshold", "1.5"])
    assert out.exit_code == 2 and "1.5" in out.output
    out = runner.invoke(cli.duplicates, ["--index", str(index_dir), "--json", "--csv", str(target)])
    assert out.exit_code == 2 and "one of --json and --csv" in out.output


def _exact(index_dir) -> dict:
    """{indexed file name: sorted names of its copies} as duplicates lists them."""
    report = SearchEngine.open(index_dir).duplicates()
    return {_name(g.paths[0]): sorted(_name(p) for p in g.paths[1:]) for g in report.groups if g.exact}


def test_copies_follow_later_runs_removal_and_sync(photos_dir, tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    for name in ("coffee", "rocket"):
        shutil.copy(photos_dir / f"{name}.jpg", src / "a" / f"{name}.jpg")
    shutil.copy(photos_dir / "coffee.jpg", src / "b" / "coffee-1.jpg")
    shutil.copy(photos_dir / "rocket.jpg", src / "b" / "rocket-1.jpg")
    index_dir = tmp_path / "idx"
    config = IndexConfig(backbone=NAME, progress=False)
    index_images([src], index_dir, config)
    assert _exact(index_dir) == {"coffee.jpg": ["coffee-1.jpg"], "rocket.jpg": ["rocket-1.jpg"]}
    store = EmbeddingStore(index_dir)
    first = store.read_manifest()
    assert first["copies"]["count"] == 2 and f"{first['copies']['file']}" in first["files"]
    assert verify_index(index_dir).ok

    # a new copy, nothing new to embed: recorded without rebuilding the FAISS index
    shutil.copy(photos_dir / "coffee.jpg", src / "b" / "coffee-2.jpg")
    summary = index_images([src], index_dir, config)
    assert summary.added == 0 and summary.already_indexed == 5
    second = store.read_manifest()
    assert (second["generation"], second["index_file"]) == (first["generation"], first["index_file"])
    assert _exact(index_dir) == {"coffee.jpg": ["coffee-1.jpg", "coffee-2.jpg"], "rocket.jpg": ["rocket-1.jpg"]}
    assert (index_dir / first["copies"]["file"]).is_file()  # the previous version's table stays for now

    # sync: a copy whose file is gone is dropped
    (src / "b" / "coffee-1.jpg").unlink()
    index_images([src], index_dir, config, sync=True)
    assert _exact(index_dir) == {"coffee.jpg": ["coffee-2.jpg"], "rocket.jpg": ["rocket-1.jpg"]}

    # removing an indexed image drops its copies
    rocket = next(h.keep for h in SearchEngine.open(index_dir).duplicates().groups if h.exact
                  and _name(h.paths[0]) == "rocket.jpg")
    remove_images(index_dir, [rocket])
    assert _exact(index_dir) == {"coffee.jpg": ["coffee-2.jpg"]}

    # a copy's file now holding content of its own is embedded, and no copy any more; the removed
    # rocket is still in the folder: indexed again, its twin a copy of it again
    shutil.copy(photos_dir / "astronaut.jpg", src / "b" / "coffee-2.jpg")
    summary = index_images([src], index_dir, config)
    assert summary.added == 2 and _exact(index_dir) == {"rocket.jpg": ["rocket-1.jpg"]}
    (src / "b" / "rocket-1.jpg").unlink()
    index_images([src], index_dir, config, sync=True)
    assert _exact(index_dir) == {} and store.read_manifest()["copies"] is None
    assert verify_index(index_dir).ok


def test_a_damaged_copies_table_is_found_and_repaired(dup_index, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(dup_index[0], index_dir)
    manifest = EmbeddingStore(index_dir).read_manifest()
    table = index_dir / manifest["copies"]["file"]
    table.write_bytes(table.read_bytes()[:-9] + b"garbage!!")
    report = verify_index(index_dir)
    assert [p.part for p in report.problems] == ["copies", "copies"]  # checksum and unreadable
    repair_index(index_dir)
    assert verify_index(index_dir).ok
    assert [g for g in SearchEngine.open(index_dir).duplicates(THRESHOLD).groups if g.exact] == []


def test_an_index_of_the_previous_release_has_no_copies(tmp_path):
    from tests.helpers import V0_INDEX

    index_dir = tmp_path / "v0"
    shutil.copytree(V0_INDEX / "index", index_dir)
    engine = SearchEngine.open(index_dir)
    report = engine.duplicates(0.95)
    assert report.images == engine.info()["count"] and not any(g.exact for g in report.groups)
    assert all(s >= 0.95 for g in report.groups for s in g.scores)


@pytest.mark.parametrize("keep", ["oldest", "newest"])
def test_oldest_and_newest_follow_indexing_order(dup_index, keep):
    report = SearchEngine.open(dup_index[0]).duplicates(THRESHOLD, keep=keep)
    for g in report.groups:
        assert g.keep == (min(g.ids) if keep == "oldest" else max(g.ids))
