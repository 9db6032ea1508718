"""The verifier's part in the duplicate groups (``groups.py``): which pairs it judges, and who vouches for whom.

* ``confirmed``: the candidate pairs that are duplicates: the score decides unless the verifier says otherwise
  (each image's KEYPOINT_CANDIDATES best partners in the band KEYPOINT_FLOOR to KEYPOINT_SURE, its
  KEYPOINT_CORNERS sharing the most corners, and every pair above it, are judged, all at once, in worker
  processes).
* ``Judge``: the verdict on one pair, each judged once; ``verdicts`` keeps those that overrode the score.  Above
  KEYPOINT_SURE only a refutation by a fitted transform counts (the two aligned, and they differ: clock faces
  whose hands mirror each other score 0.991-0.995); a check that could not align them does not.  Nor, at any
  score, does a dense check that could not align a picture too poor in corners for the keypoint check (a sky,
  a gradient) whose colours as a whole are alike: its crop is not near it to begin with
  (scripts/bench_duplicates.py: of such refutations above the threshold, 34 were of true pairs and 19 of
  tiles of one photograph, 5 of them two halves of a colour wheel; without the colour condition pair
  precision 0.997 -> 0.989, with it 0.997; recall 0.850 -> 0.861; the emoji demo's groups unchanged).
* ``vouched``: when a keeper's group is formed, a member the keeper's own check left out joins through its best
  verified neighbour already in the group (a bordered keeper does not match a crop of its original; the
  original does).  Only an edge the verifier matched, clearly (VOUCH_NCC, VOUCH_CONFLICT: a second hop is
  weaker evidence), vouches, never a cosine alone, so look-alikes are not chained in by their scores; a member
  the keeper's check aligned and found other detail in (look-alike clip-art: flags of one layout, one figure
  with another attribute) or marked "not a duplicate" against anyone in the group stays out.
"""

from __future__ import annotations

import logging

import numpy as np

from imgsearch.search.duplicates.pairs import Pairs
from imgsearch.search.duplicates.progress import DuplicatesProgress
from imgsearch.search.duplicates.verifier import (MAX_CONFLICT, MAX_DETAIL, MIN_AGREEMENT, MIN_INLIERS,
                                                   MIN_POINTS, colours_alike)

log = logging.getLogger(__name__)

# with keypoints (search/duplicates/keypoints.py), a pair scoring from KEYPOINT_FLOOR to KEYPOINT_SURE is a duplicate
# when the two files' keypoints match, and is not when both have corners enough and they do not match;
# a pair whose keypoints cannot judge (a flat picture, a file gone) needs the threshold.  Which pairs are judged
# (``asked``): among each image's KEYPOINT_RANKED best partners by cosine, its KEYPOINT_CANDIDATES best, and the
# KEYPOINT_CORNERS that share the most corners with it (``verifier.shared_corners``, MIN_INLIERS or more: tiles
# of one photograph, edited alike, outscore an image's own crop or sticker by cosine, not by corners).
# scripts/bench_duplicates.py: of the 3,456 true pairs, the 10 best by cosine held 2,790 in 8,721 pairs judged;
# 6 + 6 among the 20 best hold 2,941 in 7,358.  The corners are counted among each image's 40 best: a sticker
# pulls an edit's cosine towards the other photos with that sticker (an edit's pair with its original ranked
# 24th), and counting is cheap (0.2 ms a pair): pair recall 0.841 -> 0.850 at precision 0.997 (80: the same).
# A pair picked for its corners alone, below the threshold, is judged by its keypoints alone
# (``verifier.keypoints_verdict``; the dense check is for pictures without corners to share): of the
# benchmark's true pairs the dense check matched 148 below the threshold, 4 of them outside the 6 best by cosine
# (and the groups are the same without them), while on the emoji demo 731 of 1,013 such pairs in a sample of
# 3,000 went on to a dense check that never matched.
KEYPOINT_FLOOR = 0.55  # 0.957 of the benchmark's true pairs score at least this (lite0 int8)
KEYPOINT_SURE = 0.99  # above: the same picture unless a fitted transform aligns the two and finds them different
KEYPOINT_CANDIDATES = 6
KEYPOINT_CORNERS = 6
KEYPOINT_RANKED = 40  # an image's best partners by cosine among which its corners are counted
# a member vouches for another only through a clear match, a second hop being weaker evidence for the keeper
# (scripts/bench_duplicates.py --misses: the true edits let in through another member correlate 0.915 and more,
# with no disagreeing block but in one recoloured flat picture, 0.086)
VOUCH_NCC = 0.93  # clock faces at other hours that the pair rule lets through correlate 0.88-0.91
VOUCH_CONFLICT = 0.05  # keycaps with another digit on one frame: 0.09 of their textured blocks disagree
WHOLE = 0.9  # a dense check that laid the member over this much of the keeper compared the whole pictures


class Judge:
    """The verifier's verdict on a pair: True (duplicates), False (not), None (the score decides).

    Pairs scoring KEYPOINT_FLOOR or more are judged, each once (above KEYPOINT_SURE only a fitted transform's
    refutation counts: ``aligned_refutation``); ``verdicts`` keeps those that overrode the score: (a, b) -> True
    (confirmed below the threshold) or False (refuted above it).
    """

    def __init__(self, matcher, threshold: float):
        self.matcher, self.threshold = matcher, threshold
        self.verdicts: dict[tuple[int, int], bool] = {}

    def _unaligned_without_corners(self, a: int, b: int, found) -> bool:
        """Whether the dense check could not lay one picture on the other (a warp that is no similarity, or
        not near to begin with: nothing compared) and one of them has too few corners for the keypoint check
        (MIN_POINTS: a sky, a gradient, a flat drawing), so the dense check was the only one: ECC aligns only
        nearby pictures, and a crop of a picture without corners is not near its original to begin with.  Their
        colours as a whole must still be alike (``verifier.colours_alike``): a blue gradient and a green one
        are two pictures, aligned or not."""
        if found.check != "dense" or found.coverage > 0:
            return False
        fa, fb = self.matcher.features(a), self.matcher.features(b)
        if fa is None or fb is None:
            return True
        return min(len(fa), len(fb)) < MIN_POINTS and colours_alike(fa, fb)

    def __call__(self, a: int, b: int, score: float) -> bool | None:
        if score < KEYPOINT_FLOOR:
            return None
        found = self.matcher.evidence(min(a, b), max(a, b))  # the pair's verdict, ``matcher.verdict``
        verdict = found.match
        if verdict is None:  # a file gone: no evidence either way
            return None
        if score >= KEYPOINT_SURE and not aligned_refutation(found):
            return None  # near-identical: a check that could not align them says nothing
        if verdict is False and self._unaligned_without_corners(a, b, found):
            return None  # the only check these pictures allow could not lay one on the other: nothing said
        if verdict != (score >= self.threshold):
            self.verdicts[(min(a, b), max(a, b))] = verdict
        return verdict


def confirmed(candidates: Pairs, threshold: float, judge: Judge, progress: DuplicatesProgress) -> Pairs:
    """The candidate pairs that are duplicates: the score decides, unless the keypoints say otherwise;
    the pairs ``asked`` are judged (the keeper check judges the rest it needs)."""
    keep = candidates.score >= threshold
    progress.start("verifying", 0)  # a cancel is heard between two chunks of pairs
    asked, by_corners = _asked(candidates, judge.matcher, progress)
    quick = by_corners[~keep[by_corners]]  # picked for their corners alone, below the threshold: see above
    asked = np.union1d(asked, by_corners[keep[by_corners]])
    progress.more(len(asked) + len(quick))
    judge.matcher.prepare([(int(candidates.a[i]), int(candidates.b[i])) for i in asked], progress.advance)
    judge.matcher.prepare_keypoints([(int(candidates.a[i]), int(candidates.b[i])) for i in quick], progress.advance)
    for i in np.union1d(asked, quick).tolist():
        a, b = int(candidates.a[i]), int(candidates.b[i])
        verdict = judge(a, b, float(candidates.score[i])) if judge.matcher.judged(a, b) else None
        if verdict is not None:
            keep[i] = verdict
    if judge.matcher.unreadable:
        log.warning("%d images could not be read for keypoints: only their cosine scores count",
                    judge.matcher.unreadable)
    return Pairs(candidates.a[keep], candidates.b[keep], candidates.score[keep], candidates.method)


def _asked(candidates: Pairs, matcher, progress: DuplicatesProgress) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the candidate pairs to judge: (every pair above KEYPOINT_SURE and, among each image's
    KEYPOINT_RANKED best partners in the band, its KEYPOINT_CANDIDATES best; those of the KEYPOINT_CORNERS
    that share the most corners with it (at least MIN_INLIERS) that are not in the first).  Which pairs are
    judged does not depend on verdicts: all at once, in processes."""
    band = np.flatnonzero((candidates.score >= KEYPOINT_FLOOR) & (candidates.score < KEYPOINT_SURE))
    band = band[np.argsort(-candidates.score[band], kind="stable")]
    ranked: dict[int, list[int]] = {}  # image -> positions of its best partners, best first
    for i, a, b in zip(band.tolist(), candidates.a[band].tolist(), candidates.b[band].tolist()):
        for x in (a, b):
            mine = ranked.setdefault(x, [])
            if len(mine) < KEYPOINT_RANKED:
                mine.append(i)
    pick = {i for mine in ranked.values() for i in mine[:KEYPOINT_CANDIDATES]}
    pick.update(np.flatnonzero(candidates.score >= KEYPOINT_SURE).tolist())
    corners: set[int] = set()
    counted = np.array(sorted({i for mine in ranked.values() for i in mine}), np.int64)
    if len(counted) and KEYPOINT_CORNERS:
        progress.more(len(counted))
        shared = dict(zip(counted.tolist(), matcher.shared_corners(
            [(int(candidates.a[i]), int(candidates.b[i])) for i in counted], progress.advance).tolist()))
        for mine in ranked.values():
            by_corners = sorted(mine, key=lambda i: -shared[i])[:KEYPOINT_CORNERS]
            corners.update(i for i in by_corners if shared[i] >= MIN_INLIERS and i not in pick)
    return np.array(sorted(pick), np.int64), np.array(sorted(corners), np.int64)


def aligned_refutation(found) -> bool:
    """Whether the verifier's ``Evidence`` refutes the pair with a fitted transform (MIN_INLIERS inliers: the
    two aligned, and they differ), not by failing to align them."""
    return found.match is False and found.check == "keypoints" and found.inliers >= MIN_INLIERS


def clear_match(found) -> bool:
    """Whether the verifier's ``Evidence`` is a match clear enough to vouch for a member (VOUCH_NCC, VOUCH_CONFLICT)."""
    return found.match is True and found.correlation >= VOUCH_NCC and found.conflict <= VOUCH_CONFLICT


def keeper_saw_other_detail(found, vouching=None) -> bool:
    """Whether the keeper's own check aligned the member and found it another picture: detail that differs
    (``Evidence.conflict`` over MAX_CONFLICT: another emblem on one flag layout, another attribute on one
    figure; or a part drawn otherwise, ``Evidence.detail``: MAX_DETAIL), or, laid whole on the whole keeper by the dense check (WHOLE), blocks that agree in shape
    (MIN_AGREEMENT) in pictures that do not correlate (one swatch in another colour, one square at another
    size).  No member's match overrides that, but for one: when the vouching member's own match left a
    sticker out (``vouching``'s ``occluded``), the conflict the keeper's keypoint check saw may be that sticker
    (a bordered keeper holds the picture in part of its thumbnail, where the sticker spans too few blocks to be
    told from other detail: scripts/bench_duplicates.py, sticker copies grouped 0.70 -> 0.80, pair recall
    0.887 -> 0.905 at precision 0.996).  A check that could not align them (a crop against a bordered copy: a
    warp refuted before the blocks were compared) leaves it open."""
    if found.match is not False:
        return False
    if vouching is not None and vouching.occluded > 0 and found.check == "keypoints":
        return False  # the member's own match left a sticker out, which the keeper's check saw as other detail
    return found.conflict > MAX_CONFLICT or found.detail >= MAX_DETAIL or (
        found.check == "dense" and found.coverage >= WHOLE and found.agreement >= MIN_AGREEMENT)


def vouched(judge: Judge, ids: np.ndarray, part: np.ndarray, passed: np.ndarray, via: np.ndarray,
            edges: tuple[np.ndarray, np.ndarray, np.ndarray], marks=None) -> None:
    """Grow the keeper's group (``part[passed]``, positions into ``ids``) through verified edges, in place.

    ``edges``: (ea, eb, score) of the component's pairs, positions into ``ids``.  Round after round, each
    member left out is checked against the members that joined in the round before (the keeper's group to
    begin with), best-scoring pair first; the first the verifier matches clearly (``clear_match``) vouches for it: ``via[k]`` (a
    position into ``ids``) records which.  A member marked against anyone in the group is not let in, nor one
    the keeper (``via``'s value) aligned and found other detail in (``keeper_saw_other_detail``).
    """
    ea, eb, score = edges
    keeper = int(ids[via[0]])
    inside = np.isin(ea, part) & np.isin(eb, part)
    ea, eb, score = ea[inside], eb[inside], score[inside]
    where = {int(p): k for k, p in enumerate(part)}  # position into ids -> position into part
    group = {int(p) for p in part[passed]}
    newest = set(group)
    partners = marks.partners if marks is not None and len(marks) else {}
    while newest:
        ask = [(float(s), int(g), int(r)) for x, y, s in zip(ea.tolist(), eb.tolist(), score.tolist())
               for g, r in ((x, y), (y, x)) if g in newest and r not in group]
        if not ask:
            return
        ask.sort(key=lambda t: (-t[0], t[1], t[2]))
        judge.matcher.prepare([(int(ids[g]), int(ids[r])) for _, g, r in ask])  # in worker processes
        newest = set()
        for _, g, r in ask:
            if r in group:
                continue
            vouching = judge.matcher.evidence(*sorted((int(ids[g]), int(ids[r]))))
            if not clear_match(vouching):
                continue
            if keeper_saw_other_detail(judge.matcher.evidence(*sorted((keeper, int(ids[r])))), vouching):
                continue
            marked = partners.get(int(ids[r]))
            if marked and marked & {int(ids[m]) for m in group}:
                continue
            group.add(r)
            newest.add(r)
            passed[where[r]], via[where[r]] = True, g
