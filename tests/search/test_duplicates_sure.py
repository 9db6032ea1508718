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
