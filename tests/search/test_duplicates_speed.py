"""Verification judged many pairs at once (search/duplicates/parallel.py, KeypointMatcher.prepare) gives the same
evidence as the plain verifier.compare of each pair, in any number of processes, and the same groups."""

from __future__ import annotations

import itertools
import os

import pytest

from imgsearch.search.duplicates import parallel
from imgsearch.search.duplicates.groups import find_duplicates
from imgsearch.search.duplicates.keypoints import KeypointMatcher
from imgsearch.search.duplicates.verifier import MIN_INLIERS, compare, keypoints_verdict
from imgsearch.search.engine import SearchEngine
from tests.pixel_model import DUP_THRESHOLD


@pytest.fixture
def engine(dup_index):
    return SearchEngine.open(dup_index[0])


def _all_pairs(engine):
    return list(itertools.combinations(sorted(engine.ids), 2))


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_pairs_judged_in_processes_have_the_plain_compares_evidence(engine, monkeypatch, workers):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)  # processes even for a few pairs
    monkeypatch.setattr(parallel, "CHUNK", 5)  # pairs split over chunks and processes
    matcher = KeypointMatcher(engine, workers=workers)
    pairs = _all_pairs(engine) + [(b, a) for a, b in _all_pairs(engine)]  # both orders: the keeper differs
    fast = parallel.compare_pairs(pairs, matcher.features, workers)
    plain = [compare(matcher.features(a), matcher.features(b)) for a, b in pairs]
    assert fast == plain
    assert {e.check for e in plain} >= {"keypoints"} and any(e.match for e in plain)


def test_prepared_evidence_is_what_evidence_computes_alone(engine, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    prepared = KeypointMatcher(engine, workers=2)
    prepared.prepare(_all_pairs(engine))
    alone = KeypointMatcher(engine, workers=1)
    for a, b in _all_pairs(engine):
        assert prepared.evidence(a, b) == alone.evidence(a, b)


def test_groups_are_the_same_with_one_process_and_with_several(engine, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    one = find_duplicates(engine, DUP_THRESHOLD, keypoints=True, matcher=KeypointMatcher(engine, workers=1)).to_dict()
    many = find_duplicates(engine, DUP_THRESHOLD, keypoints=True, matcher=KeypointMatcher(engine, workers=2)).to_dict()
    for report in (one, many):
        report.pop("seconds")
    assert one == many and one["groups"]


def _die(*_):
    os._exit(3)


def test_a_dying_process_leaves_the_pairs_to_this_one(engine, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    monkeypatch.setattr(parallel, "_chunk", _die)
    matcher = KeypointMatcher(engine, workers=2)
    pairs = _all_pairs(engine)
    assert parallel.compare_pairs(pairs, matcher.features, 2) == [
        compare(matcher.features(a), matcher.features(b)) for a, b in pairs]


def test_within_running_the_processes_start_once_and_end_with_it(engine, monkeypatch):
    started = []
    new_pool = parallel._new_pool

    def counted(*args):
        started.append(new_pool(*args))
        return started[-1]

    monkeypatch.setattr(parallel, "_new_pool", counted)
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 6)
    monkeypatch.setattr(parallel, "MIN_POOLED", 2)
    pairs = _all_pairs(engine)
    matcher, alone = KeypointMatcher(engine, workers=2), KeypointMatcher(engine, workers=1)
    with matcher.running():
        matcher.prepare(pairs[:1])  # too few to start processes: judged here
        assert started == []
        matcher.prepare(pairs[1:7])  # starts them
        matcher.prepare(pairs[7:9])  # small, but they run: judged there
        corners = matcher.shared_corners(pairs[9:12])
        assert len(started) == 1
        processes = list(started[0]._processes.values())
        assert processes and all(p.is_alive() for p in processes)
    assert all(not p.is_alive() for p in processes)  # ended with the context
    assert [matcher.evidence(a, b) for a, b in pairs[:9]] == [alone.evidence(a, b) for a, b in pairs[:9]]
    assert corners.tolist() == alone.shared_corners(pairs[9:12]).tolist()


def test_a_dying_process_within_running_leaves_its_pairs_here_and_later_calls_start_anew(engine, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_PARALLEL", 0)
    pairs = _all_pairs(engine)
    matcher, alone = KeypointMatcher(engine, workers=2), KeypointMatcher(engine, workers=1)
    with matcher.running():
        with monkeypatch.context() as m:
            m.setattr(parallel, "_chunk", _die)
            matcher.prepare(pairs[:4])
        matcher.prepare(pairs[4:])  # new processes
    assert [matcher.evidence(a, b) for a, b in pairs] == [alone.evidence(a, b) for a, b in pairs]


def test_the_keypoint_verdict_alone_is_the_whole_verdict_or_none(engine):
    """Pairs picked for their shared corners alone, below the threshold, are judged by their keypoints alone
    (judge.confirmed): where the keypoint check decides, its evidence is compare's; elsewhere nothing."""
    matcher = KeypointMatcher(engine, workers=1)
    decided = 0
    for a, b in _all_pairs(engine) + [(b, a) for a, b in _all_pairs(engine)]:
        quick, whole = keypoints_verdict(matcher.features(a), matcher.features(b)), compare(matcher.features(a),
                                                                                           matcher.features(b))
        if whole.check == "keypoints" and (whole.match is True or (whole.match is False
                                                                   and whole.inliers >= MIN_INLIERS)):
            assert quick == whole
            decided += 1
        else:
            assert quick is None
    assert decided
