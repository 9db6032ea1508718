"""A duplicates computation reports its progress by stage and obeys a cancel (search/duplicates/progress.py),
on the fake model's real index of photos, edits and copies; each member carries its stored width, height and
file size; Ctrl-C ends the command with one line."""

from __future__ import annotations

import os
import threading

import pytest
from click.testing import CliRunner
from PIL import Image

from imgsearch.search.cli import commands as cli
from imgsearch.search.duplicates import groups as groups_module
from imgsearch.search.duplicates.progress import STAGES, DuplicatesProgress
from imgsearch.search.engine import SearchEngine
from imgsearch.search.errors import DuplicatesCancelledError, ImgsearchError
from tests.pixel_model import DUP_THRESHOLD


@pytest.mark.parametrize("keypoints, stages", [(True, list(STAGES)), (False, ["pairs", "grouping"])])
def test_progress_goes_through_each_stage_to_its_total(dup_index, keypoints, stages):
    engine = SearchEngine.open(dup_index[0])
    seen = []
    report = engine.duplicates(DUP_THRESHOLD, keypoints=keypoints,
                               progress=DuplicatesProgress(lambda *state: seen.append(state), bars=False))
    assert [s for i, (s, _, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != s] == stages  # in order, once each
    for stage in stages:
        mine = [(done, total) for s, done, total in seen if s == stage]
        assert mine[0][0] == 0 and mine[-1][0] == mine[-1][1] > 0  # from 0 to its total
        assert [d for d, _ in mine] == sorted(d for d, _ in mine)  # never backwards
    assert [t for s, _, t in seen if s == "pairs"][0] == len(engine) == report.images
    # the same groups as a run nobody watches
    assert report.groups == SearchEngine.open(dup_index[0]).duplicates(DUP_THRESHOLD, keypoints=keypoints).groups


@pytest.mark.parametrize("stage", STAGES)
def test_a_cancelled_run_raises_and_caches_nothing(dup_index, stage):
    engine = SearchEngine.open(dup_index[0])
    cancel = threading.Event()

    def watch(now, done, total):
        if now == stage and done >= 1:
            cancel.set()  # as a server's DELETE would, from another thread, between two units of work

    with pytest.raises(DuplicatesCancelledError, match="cancelled; nothing was cached") as raised:
        engine.duplicates(DUP_THRESHOLD, progress=DuplicatesProgress(watch, cancel, bars=False))
    assert isinstance(raised.value, ImgsearchError)
    assert engine.duplicate_reports.cached(engine, DUP_THRESHOLD, "largest", True) is None
    # the next run computes the whole report (the keypoints found before the cancel may serve it)
    assert engine.duplicates(DUP_THRESHOLD).groups == SearchEngine.open(dup_index[0]).duplicates(DUP_THRESHOLD).groups
    assert engine.duplicate_reports.cached(engine, DUP_THRESHOLD, "largest", True) is not None


def test_a_flag_set_before_the_start_stops_it_before_any_work(dup_index):
    cancel, seen = threading.Event(), []
    cancel.set()
    with pytest.raises(DuplicatesCancelledError):
        SearchEngine.open(dup_index[0]).duplicates(DUP_THRESHOLD, progress=DuplicatesProgress(
            lambda *s: seen.append(s), cancel, bars=False))
    assert seen == []


def test_each_member_has_its_stored_width_height_and_file_size(dup_index):
    report = SearchEngine.open(dup_index[0]).duplicates(DUP_THRESHOLD)
    assert report.groups
    for g in report.groups:
        assert len(g.sizes) == len(g.ids)
        for path, size in zip(g.paths, g.sizes):
            with Image.open(path) as im:
                assert (size["width"], size["height"]) == im.size
            assert size["file_size"] == os.stat(path).st_size  # exact copies: the same bytes, the same size


def test_ctrl_c_ends_the_command_with_one_line(dup_index, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(groups_module, "_find", interrupted)
    from imgsearch.web.cli import main

    out = CliRunner().invoke(main, ["duplicates", "--index", str(dup_index[0])])
    assert out.exit_code == 130, out.output
    assert out.output.strip().splitlines() == ["Error: finding duplicates stopped (Ctrl-C); nothing was written"]
