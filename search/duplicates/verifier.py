"""Is this pair the same picture, edited, or a similar picture?  Judged by what one transform explains.

Two images' ``LocalFeatures`` (``indexer/inputs/local_features.py``: ORB
keypoints and a small RGB thumbnail) are compared, the keeper ``a`` and a
member ``b``, and ``compare`` answers with its ``Evidence``:

* ``keypoints`` (both images have MIN_POINTS corners or more): descriptors
  matched with the ratio test, one similarity transform (shift, scale,
  rotation) fitted by RANSAC, and the match must be *explained*: at least
  MIN_INLIERS inliers whose convex hull covers MIN_COVERAGE of the overlap,
  and the member's thumbnail placed on the keeper's must agree (``_agreement``:
  MIN_AGREEMENT of the informative 8 x 8 blocks agree, at most MAX_CONFLICT of
  the blocks textured on both sides disagree).  A shared ribbon, outline or
  stitching gives inliers on that part only, and the rest disagrees.
* ``dense`` (too few corners, or a keypoint fit that explains too little:
  flat art, digits, tiny images): the thumbnails aligned without corners
  (ECC, an affine warp that must stay close to a similarity), then stricter
  agreement (DENSE_AGREEMENT, a correlation of DENSE_NCC): two different
  handwritten digits of one class align roughly but not to that.

Rules that hold for photos and flat art alike (scripts/bench_duplicates.py, and
scripts/bench_verifier.py on MNIST, scikit-learn's digits and emoji):

* agreement is measured over the content overlap: EDGE pixels along the
  overlap's edge (a border's seam, resampled with the white around it) are
  left out, a block counts on its other pixels;
* a block agrees when its pixels correlate or differ by less than VISIBLE
  (a faint texture that JPEG or resampling decorrelates);
* a sticker is a compact region of disagreement, flat on one side only, of
  one colour that differs from what it hides and ends at its edge (a flag's
  field around another flag's emblem runs on), a rectangle its blocks fill, at
  most MAX_OCCLUDED of the overlap (search/duplicates/agreement.py): when the keypoints explain the rest (OCCLUDER_COVERAGE) it is left
  out and the rest must agree; disagreement in several places or with
  content on both sides (a clock's hands) is not an occluder;
* the aligned pictures must correlate (MIN_NCC), the occluder left out:
  block agreement alone lets a small differing part through (clock faces at
  other hours, the glowing star);
* no part may be drawn otherwise (MAX_DETAIL): a patch at least 3 pixels
  across where the colour-fitted pictures differ strongly (an 8's bar over a
  0, another hour hand, a tear) is another picture, however well its block
  correlates as a whole; an edit differs that much only along shifted edges,
  lines 1-2 pixels wide;
* a keypoint fit that explains little of the picture (corners crowd in one
  part) still matches when its alignment passes the dense check's bar;
* the dense check starts from whole on whole and from content on content (a
  uniform border or margin left out), and compares at the sharpness of the
  blurrier thumbnail (a half-size copy's thumbnail is an enlarged small picture).

Colours are compared after one gain and offset per channel that must move
together (brightness, contrast, a tint), or after one change of saturation,
gain and offset for all three (each colour moved towards or away from its
luma, never to another hue), whichever fits better, so a recoloured drawing (a
baseball and a softball, a blue and a green heart) is not one picture; mapped
colours are clipped to the range, as an edit's are (a vivid copy's gold at 0 blue).
Thresholds were set on the photo and emoji benchmark (scripts/bench_duplicates.py)
and checked on scikit-learn's digits (tests/search/test_verifier.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from imgsearch.indexer.inputs.local_features import LocalFeatures, cv2_module
from imgsearch.search.duplicates.agreement import FLAT_DIFF, TEXTURE, compare_blocks, correlate, grey_of

MIN_POINTS = 24  # corners each image needs for the keypoint check; fewer: the dense check
RATIO = 0.8  # Lowe's ratio test
MIN_INLIERS = 20  # fewer: a white border's corners, a digit's stroke end, match between two pictures
RESIDUAL = 4.0  # pixels at the keypoints' SIDE frame
MAX_SCALE = 8.0  # a member may be 1/8 to 8 times the keeper's size
MIN_COVERAGE = 0.1  # the inliers' hull over the overlap (clip-art keypoints crowd on outlines: agreement decides more)
MIN_OVERLAP = 0.2  # the overlap over the smaller picture's area
MIN_AGREEMENT = 0.75  # share of informative blocks that agree: one picture
REFUTE_AGREEMENT = MIN_AGREEMENT  # fewer agree: two pictures (a middle zone without a verdict cost precision: medals)
DENSE_AGREEMENT = 0.9
MIN_NCC = 0.88  # the aligned pictures' correlation (an occluder left out): clock faces at other hours 0.82-0.85
DENSE_NCC = 0.985  # two handwritten 1s reach 0.97-0.987 aligned; a recoloured copy 0.99 and more
DENSE_START = 0.5  # the whole thumbnails' correlation the dense check starts from
MAX_CONFLICT = 0.07  # more of the blocks textured in both disagree: two pictures (flags sharing an outline;
# one figure drawn as a man and as a woman, 0.05-0.1 on the emoji demo); true edits' keypoint matches: 0 in 95 % of
# pairs, 0.06 in 99 % (scripts/bench_duplicates.py: 0.1 -> 0.07 cost 0.009 of recall; the emoji demo 100 -> 81 groups)
MAX_DETAIL = 12  # thumbnail pixels of the largest part drawn otherwise (``agreement._detail``): two pictures.
# scripts/bench_duplicates.py: the true edits the verifier matched, 0 in 767 at 12 or more (one 9: a flat picture at
# JPEG 20); the emoji demo's groups of different emoji (a clock's hand, an 8's bar, a man's hair): 32 of 68 pairs
MAX_CAST = 0.2  # mean chromaticity apart (``colours_alike``): the benchmark's true pairs of corner-less pictures
# that no check aligned, 0-0.115 (a colour edit included); two halves of a colour wheel, 0.28-0.45
SHARPER = 1.3  # a thumbnail this much sharper than the other is blurred to it (dense check)
OCCLUDER_COVERAGE = 0.3  # an occluder is left out only when the inliers' hull covers this much of the overlap:
# the transform explains the picture around it (look-alike clip-art matches on its outline only, 0.2-0.3)


@dataclass(frozen=True)
class Evidence:
    """Why a pair is (or is not) one picture; ``check``: "keypoints", "dense" or "none" (nothing to judge)."""

    check: str
    match: bool | None  # None: no evidence either way
    inliers: int = 0
    coverage: float = 0.0  # keypoints: the inliers' hull over the overlap; dense: the overlap over the keeper
    agreement: float = 0.0  # share of textured blocks of the overlap whose pixels agree
    correlation: float = 0.0  # normalised correlation of the aligned thumbnails over the overlap
    scale: float = 1.0  # the member's size over the keeper's
    rotation: float = 0.0  # degrees
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # of the keeper the member covers, 0..1
    conflict: float = 0.0  # share of the blocks textured in both that disagree
    occluded: float = 0.0  # share of the overlap's blocks an occluder (a sticker, a caption box) covered, left out
    detail: int = 0  # thumbnail pixels of the largest part drawn otherwise in the other picture (MAX_DETAIL)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["region"] = list(self.region)
        return out


def compare(a: LocalFeatures | None, b: LocalFeatures | None) -> Evidence:
    """The evidence that ``b`` is ``a`` edited (``a``: the keeper); no features: ``check="none"``."""
    if a is None or b is None:
        return Evidence("none", None)
    if len(a) >= MIN_POINTS and len(b) >= MIN_POINTS:
        found = _keypoints(a, b)
        if _decided(found):
            return found
        if found.match is None:  # a transform that agrees but explains too little of the picture: dense may tell
            dense = _dense(a, b)
            return dense if dense.match else found
    return _dense(a, b)


def keypoints_verdict(a: LocalFeatures | None, b: LocalFeatures | None) -> Evidence | None:
    """``compare(a, b)`` when the keypoint check decides it (a match, or a fitted transform's refutation),
    else None (``compare`` would go on to the dense check): the cheap part of the verdict alone."""
    if a is None or b is None or len(a) < MIN_POINTS or len(b) < MIN_POINTS:
        return None
    found = _keypoints(a, b)
    return found if _decided(found) else None


def _decided(found: Evidence) -> bool:
    """Whether the keypoint check's evidence is the verdict: a match, or a fitted transform's refutation."""
    return bool(found.match) or (found.match is False and found.inliers >= MIN_INLIERS)


def shared_corners(a: LocalFeatures | None, b: LocalFeatures | None) -> int:
    """How many of ``b``'s corners match one of ``a``'s (the ratio test, the keypoint check's first step): a
    cheap measure of how much of one picture the other holds, whatever their cosine (0: corners too few)."""
    if a is None or b is None or len(a) < MIN_POINTS or len(b) < MIN_POINTS:
        return 0
    return len(_good(a, b)[0])


def _good(a: LocalFeatures, b: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
    """(b's corners, a's corners they match): each of b's descriptors against its two nearest of a's by Hamming
    distance (FAISS's brute force: 3x OpenCV's BFMatcher here, the same matches), kept when the nearest is
    clearly nearer (Lowe's ratio test; a tie for the nearest is no match, whichever of the two is listed)."""
    import faiss

    distance, nearest = faiss.knn_hamming(np.ascontiguousarray(b.descriptors), np.ascontiguousarray(a.descriptors), 2)
    query = np.flatnonzero(distance[:, 0] < RATIO * distance[:, 1])
    return query, nearest[query, 0]


def _keypoints(a: LocalFeatures, b: LocalFeatures) -> Evidence:
    cv2 = cv2_module()
    query, train = _good(a, b)
    if len(query) < MIN_INLIERS:
        return Evidence("keypoints", False, inliers=0)
    src, dst = b.points[query], a.points[train]
    cv2.setRNGSeed(len(query))  # RANSAC's samples: the same pair gets the same verdict in every process and thread
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RESIDUAL,
                                               maxIters=2000, confidence=0.999, refineIters=10)
    inliers = 0 if mask is None else int(mask.sum())
    if matrix is None or inliers < MIN_INLIERS:
        return Evidence("keypoints", False, inliers=inliers)
    scale, rotation = _similarity(matrix)
    region, overlap = _overlap(matrix, b.size, a.size)
    if not 1 / MAX_SCALE <= scale <= MAX_SCALE or overlap <= 0:
        return Evidence("keypoints", False, inliers=inliers, scale=scale, rotation=rotation)
    hull = cv2.contourArea(cv2.convexHull(dst[mask.ravel() > 0].reshape(-1, 1, 2)))
    coverage = min(1.0, hull / overlap)
    thumb = _to_thumb(matrix, b, a)
    occluder = "any" if coverage >= OCCLUDER_COVERAGE else "outlined" if coverage >= MIN_COVERAGE else None
    agreement, correlation, _, conflict, occluded, detail = compare_blocks(a.thumb, b.thumb, thumb, occluder)
    if detail >= MAX_DETAIL:  # measured again at the blurrier thumbnail's sharpness, as the dense check compares:
        ta, tb = _common_blur(a, b)  # an enlarged small copy's soft edges are no part drawn otherwise
        if ta is not a.thumb or tb is not b.thumb:
            detail = compare_blocks(ta, tb, thumb, occluder)[5]
    smaller = min(a.size[0] * a.size[1], b.size[0] * b.size[1] * scale ** 2)
    explained = coverage >= MIN_COVERAGE or (  # or the pixels confirm it, as the dense check would
        agreement >= DENSE_AGREEMENT and correlation >= DENSE_NCC and conflict <= MAX_CONFLICT)
    if explained and agreement >= MIN_AGREEMENT and conflict <= MAX_CONFLICT and overlap >= MIN_OVERLAP * smaller \
            and correlation >= MIN_NCC and detail < MAX_DETAIL:
        match = True
    elif agreement < REFUTE_AGREEMENT or conflict > MAX_CONFLICT or overlap < MIN_OVERLAP * smaller \
            or correlation < MIN_NCC or detail >= MAX_DETAIL:  # aligned, the pictures differ as a whole (a clock
        match = False  # at another hour) or in a part drawn otherwise
    else:  # the transform explains part of the pair: a sticker, a border, or a shared part: no verdict
        match = None
    return Evidence("keypoints", match, inliers, round(coverage, 3), round(agreement, 3),
                    round(correlation, 3), round(scale, 3), round(rotation, 2), region, round(conflict, 3),
                    round(occluded, 3), detail)


def _dense(a: LocalFeatures, b: LocalFeatures) -> Evidence:
    """The thumbnails aligned by ECC from whole picture on whole picture, and from content on content (a
    uniform border or margin left out); the first start that matches, else the better-correlated one."""
    ta, tb = _common_blur(a, b)
    best = None
    for start in _starts(a, b):
        found = _dense_from(a, b, ta, tb, start)
        if found.match:
            return found
        if best is None or found.correlation > best.correlation:
            best = found
    return best


def _dense_from(a: LocalFeatures, b: LocalFeatures, ta: np.ndarray, tb: np.ndarray, start: np.ndarray) -> Evidence:
    cv2 = cv2_module()
    ha, wa = ta.shape[:2]
    hb, wb = tb.shape[:2]
    template, moving = grey_of(ta), grey_of(tb)
    near = cv2.warpAffine(moving, start, (wa, ha), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inside = cv2.warpAffine(np.ones_like(moving), start, (wa, ha), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    coarse = max(wa, ha) / 16  # the pictures' coarse shapes, where the start places one on the other
    weight = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), coarse) + 1e-6  # blurred inside the overlap only

    def shape(x):
        return cv2.GaussianBlur(x * inside, (0, 0), coarse) / weight

    coarse_t, coarse_s = shape(template)[inside], shape(near)[inside]
    shapeless = max(coarse_t.std(), coarse_s.std()) < TEXTURE  # a fine texture (bricks, gravel): no coarse shape
    if inside.sum() < 16 or (not shapeless and correlate(coarse_t, coarse_s) < DENSE_START):
        return Evidence("dense", False)  # not near one another to begin with: ECC aligns only nearby pictures
    warp = _align(template, moving, start)
    # the warp maps a -> b; as b -> a it is the member placed on the keeper
    matrix = cv2.invertAffineTransform(warp)
    sx, sy = math.hypot(*matrix[:, 0]), math.hypot(*matrix[:, 1])
    shear = abs(float(matrix[:, 0] @ matrix[:, 1])) / (sx * sy)
    scale, rotation = _similarity(matrix)
    scale *= a.size[0] / a.thumb.shape[1] / (b.size[0] / b.thumb.shape[1])  # in the keypoints' frames
    region, overlap = _overlap(matrix, (wb, hb), (wa, ha))
    smaller = min(wa * ha, wb * hb * sx * sy)
    if not (max(sx, sy) / min(sx, sy) < 1.06 and shear < 0.05 and overlap >= 0.5 * smaller):
        # the warp is no similarity, or overlaps too little: no verdict but False, whatever the pixels say, so
        # the block agreement (most of a dense check's time) is not computed; its numbers are left at 0
        return Evidence("dense", False, 0, 0.0, 0.0, 0.0, round(scale, 3), round(rotation, 2), region, 0.0)
    agreement, correlation, covered, conflict, _, detail = compare_blocks(ta, tb, matrix, None)
    match = agreement >= DENSE_AGREEMENT and correlation >= DENSE_NCC and conflict <= MAX_CONFLICT \
        and detail < MAX_DETAIL
    return Evidence("dense", bool(match), 0, round(covered, 3), round(agreement, 3), round(correlation, 3),
                    round(scale, 3), round(rotation, 2), region, round(conflict, 3), 0.0, detail)


def _align(template: np.ndarray, moving: np.ndarray, start: np.ndarray) -> np.ndarray:
    """ECC's affine warp (template's pixel -> moving's pixel) from ``start``; ``start`` when it fails."""
    cv2 = cv2_module()
    try:
        return cv2.findTransformECC(template, moving, start.copy(), cv2.MOTION_AFFINE,
                                    (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 1e-4), None, 1)[1]
    except cv2.error:
        return start


def colours_alike(a: LocalFeatures, b: LocalFeatures) -> bool:
    """Whether the two pictures' colours, taken as a whole, could be one picture's (no alignment needed): their
    mean chromaticities (each pixel's r, g, b over r + g + b, near-black pixels left out) at most MAX_CAST
    apart.  A crop, a resize or a brightness, contrast or saturation change keeps the cast; two halves of a
    colour wheel, or a blue sky and a green one, do not."""
    ca, cb = _of_thumb(a, "cast", _cast), _of_thumb(b, "cast", _cast)
    return float(np.abs(ca - cb).max()) <= MAX_CAST


def _cast(thumb: np.ndarray) -> np.ndarray:
    rgb = thumb.reshape(-1, 3).astype(np.float32)
    total = rgb.sum(1)
    lit = total > 30  # near-black pixels have no colour to speak of
    if not lit.any():
        return np.full(3, 1 / 3, np.float32)
    return (rgb[lit] / total[lit, None]).mean(0)


def _of_thumb(f: LocalFeatures, name: str, compute):
    """``compute(f.thumb)``, once per features object: an image's thumbnail is judged against many partners
    (kept in the object's ``__dict__``: the frozen dataclass has no field for it)."""
    found = f.__dict__.get(name)
    if found is None:
        found = f.__dict__[name] = compute(f.thumb)
    return found


def _starts(a: LocalFeatures, b: LocalFeatures) -> list[np.ndarray]:
    """ECC's starting warps (a's pixel -> b's pixel): whole on whole, then content box on content box."""
    (ha, wa), (hb, wb) = a.thumb.shape[:2], b.thumb.shape[:2]
    starts = [np.array([[wb / wa, 0, 0], [0, hb / ha, 0]], np.float32)]
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _of_thumb(a, "content", _content), _of_thumb(b, "content", _content)
    if (ax1 - ax0) * (ay1 - ay0) < 0.97 * wa * ha or (bx1 - bx0) * (by1 - by0) < 0.97 * wb * hb:
        gx, gy = (bx1 - bx0) / (ax1 - ax0), (by1 - by0) / (ay1 - ay0)
        content = np.array([[gx, 0, bx0 - ax0 * gx], [0, gy, by0 - ay0 * gy]], np.float32)
        if not np.array_equal(content, starts[0]):  # margins in the same place: the same start, the same warp
            starts.append(content)
    return starts


def _content(thumb: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of what differs from the colour of the thumbnail's outer ring (a border, a margin)."""
    rgb = thumb.astype(np.float32)
    ring = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    away = np.abs(rgb - np.median(ring, 0)).max(2) > FLAT_DIFF
    rows, cols = np.flatnonzero(away.any(1)), np.flatnonzero(away.any(0))
    if len(rows) < 4 or len(cols) < 4:
        return 0, 0, thumb.shape[1], thumb.shape[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _common_blur(a: LocalFeatures, b: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
    """The two thumbnails at the sharpness of the blurrier: a half-size copy's thumbnail is an enlarged
    small picture, softer than its original's; the sharper one is blurred until it is no sharper."""
    cv2 = cv2_module()
    ta, tb = a.thumb, b.thumb
    sharp_a, sharp_b = _of_thumb(a, "sharpness", _sharpness), _of_thumb(b, "sharpness", _sharpness)
    if max(sharp_a, sharp_b) < SHARPER * min(sharp_a, sharp_b):
        return ta, tb
    which, other = (ta, sharp_b) if sharp_a > sharp_b else (tb, sharp_a)
    for sigma in (0.5, 0.75, 1.0, 1.5, 2.0):
        blurred = cv2.GaussianBlur(which, (0, 0), sigma)
        if _sharpness(blurred) <= other:
            break
    return (blurred, tb) if which is ta else (ta, blurred)


def _sharpness(thumb: np.ndarray) -> float:
    """Gradient energy over intensity variance: how much of the picture's contrast is in fine detail."""
    grey = grey_of(thumb)
    gy, gx = np.gradient(grey)
    return float((gx * gx + gy * gy).mean() / max(float(grey.var()), 1e-6))


def _similarity(matrix: np.ndarray) -> tuple[float, float]:
    scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
    return scale, math.degrees(math.atan2(float(matrix[1, 0]), float(matrix[0, 0])))


def _overlap(matrix: np.ndarray, size_b, size_a) -> tuple[tuple, float]:
    """(region of a covered by b as fractions (x0, y0, x1, y1), the overlap's area in a's pixels): b's frame
    placed on a's by ``matrix`` and clipped to it (``_clipped_to``; OpenCV's intersectConvexConvex answered a
    square placed on itself, off by 1e-15, with a triangle of 14 % of it)."""
    (wb, hb), (wa, ha) = size_b, size_a
    matrix = np.asarray(matrix, np.float64)
    corners = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], np.float64)
    placed = corners @ matrix[:, :2].T + matrix[:, 2]
    shared = _clipped_to(placed, wa, ha)
    if len(shared) < 3:
        return (0.0, 0.0, 0.0, 0.0), 0.0
    x, y = shared[:, 0], shared[:, 1]
    area = 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))  # the shoelace formula
    if area <= 0:
        return (0.0, 0.0, 0.0, 0.0), 0.0
    lo, hi = shared.min(0) / (wa, ha), shared.max(0) / (wa, ha)
    region = tuple(round(float(min(1.0, max(0.0, v))), 3) for v in (*lo, *hi))
    return region, area


def _clipped_to(polygon: np.ndarray, w: float, h: float) -> np.ndarray:
    """The convex ``polygon`` (k, 2) clipped to the rectangle 0..w x 0..h, one side after another
    (Sutherland-Hodgman): exact for a convex polygon, whatever edges the two share."""
    points = [tuple(p) for p in polygon]
    for axis, bound, below in ((0, 0.0, False), (0, float(w), True), (1, 0.0, False), (1, float(h), True)):
        if not points:
            break
        kept = []
        for k, p in enumerate(points):
            q = points[(k + 1) % len(points)]
            p_in = p[axis] <= bound if below else p[axis] >= bound
            q_in = q[axis] <= bound if below else q[axis] >= bound
            if p_in:
                kept.append(p)
            if p_in != q_in:  # the side crosses the bound: where it does
                t = (bound - p[axis]) / (q[axis] - p[axis])
                kept.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        points = kept
    return np.array(points, np.float64).reshape(-1, 2)


def _to_thumb(matrix: np.ndarray, b: LocalFeatures, a: LocalFeatures) -> np.ndarray:
    """The b -> a transform of the keypoints' frames, between the thumbnails' frames."""
    sa = a.thumb.shape[1] / a.size[0]
    sb = b.thumb.shape[1] / b.size[0]
    out = matrix.astype(np.float64).copy()
    out[:, :2] *= sa / sb
    out[:, 2] *= sa
    return out
