"""A cosine of 0.99 or more is not "the same picture whatever the verifier says": near-identical clip-art (clock
faces whose hands mirror each other score 0.991-0.995 on lite0) is refuted by a transform that aligns the two
and finds them different; a near-identical copy (a photo at half size, re-encoded) still needs no more."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.search.test_duplicates import GEN, _arc, write_index
from tests.search.test_duplicates_via import THRESHOLD


def _engine(tmp_path, pictures):
    paths = []
    for name, image in pictures:
        path = tmp_path / f"{name}.png"
        image.save(path, compress_level=1)
        paths.append((str(path), hashlib.sha256(path.read_bytes()).hexdigest(), image.size))
    return write_index(tmp_path / "idx", np.vstack([_arc([0, 5]), GEN.sample(20, seed=9)]),  # cos 5 deg: 0.996
                       paths=[p for p, _, _ in paths] + [f"/nowhere/{i}" for i in range(20)],
                       shas=[s for _, s, _ in paths] + [f"{i:064x}" for i in range(20)],
                       sizes=[z for _, _, z in paths] + [(10, 10)] * 20)


def test_mirrored_clock_faces_scoring_above_0_99_are_not_grouped(tmp_path):
    from imgsearch.indexer.inputs.samples import emoji_picture, emoji_records

    by_stem = {r["file"].stem: r for r in emoji_records()}
    engine = _engine(tmp_path, [(s, emoji_picture(by_stem[s])) for s in ("1f554", "1f556")])  # 5:00 and 7:00
    report = engine.duplicates(THRESHOLD, keypoints=True)
    assert report.groups == [] and report.refuted == 1


@pytest.mark.parametrize("edit", ["half", "jpeg20"])
def test_a_near_identical_copy_above_0_99_is_still_grouped(tmp_path, near_dups, edit):
    tile = {(i.group, i.edit): i.image for i in near_dups}
    engine = _engine(tmp_path, [("original", tile[(7, "original")]), (edit, tile[(7, edit)])])
    report = engine.duplicates(THRESHOLD, keypoints=True)
    assert [sorted(g.ids) for g in report.groups] == [[0, 1]] and report.refuted == 0


def _engine_at(tmp_path, pictures, degrees: float):
    """Two pictures whose vectors are ``degrees`` apart (cos 0.93 at 21.6), among 20 others far away."""
    paths = []
    for name, image in pictures:
        path = tmp_path / f"{name}.png"
        image.save(path, compress_level=1)
        paths.append((str(path), hashlib.sha256(path.read_bytes()).hexdigest(), image.size))
    return write_index(tmp_path / "idx", np.vstack([_arc([0, degrees]), GEN.sample(20, seed=9)]),
                       paths=[p for p, _, _ in paths] + [f"/nowhere/{i}" for i in range(20)],
                       shas=[s for _, s, _ in paths] + [f"{i:064x}" for i in range(20)],
                       sizes=[z for _, _, z in paths] + [(10, 10)] * 20)


def _corners(image) -> int:
    from imgsearch.indexer.inputs.local_features import local_features

    return len(local_features(image))


def test_a_crop_of_a_picture_without_corners_is_not_refuted_by_a_dense_check_that_cannot_align_it(
        tmp_path, near_dups):
    """A sky without corners: the keypoint check cannot run, and ECC, from the crop's whole on the original's
    whole, does not reach it; that is no evidence that the two differ, so their cosine (0.93, above the
    threshold) decides."""
    from imgsearch.search.duplicates.verifier import MIN_POINTS

    tile = {(i.group, i.edit): i.image for i in near_dups}
    original, crop = tile[(28, "original")], tile[(28, "crop80")]
    assert max(_corners(original), _corners(crop)) < MIN_POINTS
    engine = _engine_at(tmp_path, [("crop80", crop), ("original", original)], 21.6)  # judged crop first
    report = engine.duplicates(THRESHOLD, keypoints=True)
    assert [sorted(g.ids) for g in report.groups] == [[0, 1]] and report.refuted == 0
    assert report.groups[0].evidence[1]["decided_by"] == "cosine"


def test_two_photos_with_corners_that_nothing_aligns_are_still_refuted_above_the_threshold(tmp_path, near_dups):
    from imgsearch.search.duplicates.verifier import MIN_POINTS

    tile = {(i.group, i.edit): i.image for i in near_dups}
    one, other = tile[(40, "original")], tile[(50, "original")]
    assert min(_corners(one), _corners(other)) >= MIN_POINTS
    engine = _engine_at(tmp_path, [("one", one), ("other", other)], 21.6)
    report = engine.duplicates(THRESHOLD, keypoints=True)
    assert report.groups == [] and report.refuted == 1


def test_two_pictures_without_corners_in_other_colours_are_still_refuted_when_nothing_aligns_them(
        tmp_path, near_dups):
    """Two halves of a colour wheel (one blue, one green) score 0.93: no check aligns them, and their colours as
    a whole are not one picture's (verifier.colours_alike), so they stay apart."""
    from imgsearch.search.duplicates.verifier import MIN_POINTS

    tile = {(i.group, i.edit): i.image for i in near_dups}
    blue, green = tile[(30, "original")], tile[(31, "original")]
    assert max(_corners(blue), _corners(green)) < MIN_POINTS
    engine = _engine_at(tmp_path, [("blue", blue), ("green", green)], 21.6)
    report = engine.duplicates(THRESHOLD, keypoints=True)
    assert report.groups == [] and report.refuted == 1
