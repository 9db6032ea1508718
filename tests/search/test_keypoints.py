"""Keypoint checks of duplicate pairs (search/duplicates/keypoints.py): edits of one picture match, look-alikes do not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.inputs.near_duplicates import near_duplicate_set
from imgsearch.indexer.inputs.samples import lookalikes
from imgsearch.search.engine import SearchEngine

pytestmark = pytest.mark.slow  # a benchmark set through the int8 CNN and ORB: a measurement

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
HARD_EDITS = ("crop50", "rotate10", "occlude", "border")  # the edits cosine alone misses most


@pytest.fixture(scope="module")
def bench_index(tmp_path_factory):
    """Six photo tiles (two of one texture) with their edits, and 12 look-alike digits and emoji."""
    from imgsearch.indexer.run.pipeline import index_images

    root = tmp_path_factory.mktemp("kp")
    wanted = {"astronaut-0-0", "coffee-0-1", "rocket-1-2", "gravel-0-0", "gravel-1-1", "immunohistochemistry-0-0"}
    items = [i for i in near_duplicate_set() if i.name.rsplit("-", 1)[0] in wanted or i.name in wanted]
    alike = [i for i in lookalikes() if i.edit in ("lookalike-digit-1", "lookalike-animal-mammal")]
    items += alike[:6] + [i for i in alike if i.edit == "lookalike-digit-1"][:6]
    truth = {}
    for item in items:
        path = root / "images" / f"{item.group:05d}" / f"{item.edit}-{item.name}.{'jpg' if item.encoded else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(item.encoded) if item.encoded else item.image.save(path)
        truth[str(path)] = item.group
    index_images([root / "images"], root / "idx", IndexConfig(progress=False))
    return root / "idx", truth


def _pairs(report, truth):
    found = set()
    for g in report.groups:
        groups = {truth[p] for p in g.paths}
        found |= {(g.keep, i) for i in g.ids if i != g.keep}
        assert len(groups) == 1, f"look-alikes grouped: {g.paths}"  # nothing from two pictures in one group
    return found


def test_keypoints_group_the_hard_edits_that_cosine_alone_misses(bench_index):
    index_dir, truth = bench_index
    engine = SearchEngine.open(index_dir)
    plain, checked = engine.duplicates(0.97, keypoints=False), engine.duplicates(0.97, keypoints=True)
    assert checked.keypoints and checked.confirmed > 0 and not plain.keypoints
    members = lambda report: {p for g in report.groups for p in g.paths}  # noqa: E731
    hard = {p for p in truth if Path(p).name.split("-", 1)[0] in HARD_EDITS}
    print(f"hard edits grouped: cosine >= 0.97 {len(hard & members(plain))}, "
          f"with keypoints {len(hard & members(checked))} of {len(hard)}")
    assert len(hard & members(checked)) >= 0.7 * len(hard)  # measured 22 of 24
    assert len(hard & members(checked)) > len(hard & members(plain))
    _pairs(checked, truth)  # and no group mixes two pictures (two gravel tiles, two 1s, two mammals)


def test_the_command_and_the_api_take_the_keypoint_switch(bench_index):
    from tests.helpers import LiveServer

    index_dir, truth = bench_index
    out = subprocess.run([IMGSEARCH, "duplicates", "--index", str(index_dir), "--threshold", "0.97", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    with_kp = [json.loads(line) for line in out.stdout.splitlines()]
    out = subprocess.run([IMGSEARCH, "duplicates", "--index", str(index_dir), "--threshold", "0.97", "--json",
                          "--no-keypoints"], capture_output=True, text=True, timeout=600)
    without = [json.loads(line) for line in out.stdout.splitlines()]
    assert sum(len(g["ids"]) for g in with_kp) > sum(len(g["ids"]) for g in without)
    from imgsearch.web import create_app

    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "WARM_UP": False}))
    try:
        on = requests.get(f"{server.url}/api/duplicates?threshold=0.97&limit=1000", timeout=600).json()
        off = requests.get(f"{server.url}/api/duplicates?threshold=0.97&limit=1000&keypoints=false",
                           timeout=600).json()
    finally:
        server.close()
    assert on["keypoints"] is True and off["keypoints"] is False
    assert on["total"] == len(with_kp) and off["total"] == len(without)
