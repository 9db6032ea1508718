"""Which candidate pairs the verifier judges (search/duplicates/judge.py ``_asked``): an image's best partners
by cosine, and those that share the most corners with it.  Tiles of one photograph edited alike outscore an
image's own sticker or crop by cosine (scripts/bench_duplicates.py: 585 of the 3,456 true pairs were outside
the 10 best by cosine); the corners they share tell the edit from the look-alike.  Real pictures, real ORB."""

from __future__ import annotations

import numpy as np

from imgsearch.indexer.inputs.local_features import local_features
from imgsearch.indexer.inputs.near_duplicates import EDITS, originals
from imgsearch.search.duplicates import judge
from imgsearch.search.duplicates.pairs import Pairs
from imgsearch.search.duplicates.progress import DuplicatesProgress
from imgsearch.search.duplicates.verifier import shared_corners


class Corners:
    """The matcher's part in choosing pairs: ``shared_corners`` of real features (as KeypointMatcher's)."""

    def __init__(self, features):
        self.features, self.asked = features, []

    def shared_corners(self, pairs, done=None):
        self.asked += pairs
        if done:
            done(len(pairs))
        return np.array([shared_corners(self.features[a], self.features[b]) for a, b in pairs], np.int64)


def test_an_edit_outscored_by_look_alikes_is_judged_through_the_corners_it_shares():
    tiles = originals()
    photo = tiles[0][1]
    sticker = EDITS["occlude"](photo, np.random.default_rng(0))
    # more look-alikes than judge.KEYPOINT_RANKED once held (20): a sticker draws an edit's cosine towards the
    # other photos with that sticker, and the edit's pair with its original ranked 24th on the benchmark
    others = [img for name, img in tiles[1:] if not name.startswith(tiles[0][0].rsplit("-", 2)[0])][:30]
    features = {0: local_features(photo), 1: local_features(sticker)}
    features.update({2 + k: local_features(img) for k, img in enumerate(others)})
    # by cosine, the original and its sticker edit are each other's 31st partner: 30 other photos score higher
    a, b, score = [0], [1], [0.6]
    for k in range(len(others)):
        a += [0, 1]
        b += [2 + k, 2 + k]
        score += [0.95 - 0.01 * k, 0.95 - 0.01 * k]
    candidates = Pairs(np.array(a), np.array(b), np.array(score), "exact")
    matcher = Corners(features)
    by_cosine, by_corners = judge._asked(candidates, matcher, DuplicatesProgress(bars=False))
    assert 0 in by_corners.tolist() and 0 not in by_cosine.tolist()  # the edit's pair: it shares its corners
    asked = np.union1d(by_cosine, by_corners)
    edit = shared_corners(features[0], features[1])
    assert edit >= 100 and all(shared_corners(features[0], features[2 + k]) < edit / 2 for k in range(len(others)))
    # the original asks its KEYPOINT_CANDIDATES best by cosine and its KEYPOINT_CORNERS best by corners, no more
    # (the other photos, with two partners each, ask both: pairs with the original and with the edit)
    mine = [i for i in asked.tolist() if candidates.a[i] == 0 and candidates.b[i] >= 2]
    assert len(mine) == len(others)
