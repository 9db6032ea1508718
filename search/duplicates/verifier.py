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

Colours are compared after one gain and offset per channel that must move
together (brightness, contrast, saturation), so a recoloured drawing (a
baseball and a softball, a blue and a green heart) is not one picture.
Thresholds were set on the photo and emoji benchmark (scripts/bench_duplicates.py)
and checked on scikit-learn's digits (tests/search/test_verifier.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from imgsearch.indexer.inputs.local_features import LocalFeatures, cv2_module

MIN_POINTS = 24  # corners each image needs for the keypoint check; fewer: the dense check
RATIO = 0.8  # Lowe's ratio test
MIN_INLIERS = 20  # fewer: a white border's corners, a digit's stroke end, match between two pictures
RESIDUAL = 4.0  # pixels at the keypoints' SIDE frame
MAX_SCALE = 8.0  # a member may be 1/8 to 8 times the keeper's size
MIN_COVERAGE = 0.1  # the inliers' hull over the overlap (clip-art keypoints crowd on outlines: agreement decides more)
MIN_OVERLAP = 0.2  # the overlap over the smaller picture's area
BLOCK = 8  # pixels of a thumbnail block
BLOCK_NCC = 0.5
MIN_AGREEMENT = 0.75  # share of informative blocks that agree: one picture
REFUTE_AGREEMENT = MIN_AGREEMENT  # fewer agree: two pictures (a middle zone without a verdict cost precision: medals)
DENSE_AGREEMENT = 0.9
MIN_NCC = 0.88  # the aligned pictures' correlation (an occluder left out): clock faces at other hours 0.82-0.85
DENSE_NCC = 0.985  # two handwritten 1s reach 0.97-0.987 aligned; a recoloured copy 0.99 and more
DENSE_START = 0.5  # the whole thumbnails' correlation the dense check starts from
TEXTURE = 4.0  # grey levels of standard deviation that make a block textured
FLAT_DIFF = 20.0  # grey levels: a flat block this far from the other's colour disagrees
TEXTURED_DIFF = 40.0
MAX_CONFLICT = 0.1  # more of the blocks textured in both disagree: two pictures (flags sharing an outline)
OCCLUDED_WEIGHT = 0.5  # of a block flat on one side only
MAX_GAIN_RATIO = 1.5  # channels' gains of one colour change (saturation 1.8 on photos: under 1.3)
SHARPER = 1.3  # a thumbnail this much sharper than the other is blurred to it (dense check)
EDGE = 2  # thumbnail pixels along the overlap's edge left out of the blocks
VISIBLE = 6.0  # grey levels of mean difference under which a block agrees though it does not correlate
MAX_OCCLUDED = 0.5  # share of the overlap's blocks a flat occluder (a sticker) may cover, its part-covered edge blocks included
OCCLUDER_COVERAGE = 0.3  # an occluder is left out only when the inliers' hull covers this much of the overlap:
# the transform explains the picture around it (look-alike clip-art matches on its outline only, 0.2-0.3)
MAX_OFFSET_SPREAD = 40.0  # grey levels between the channels' offsets


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
        if found.match or (found.match is False and found.inliers >= MIN_INLIERS):  # a fitted transform's verdict
            return found
        if found.match is None:  # a transform that agrees but explains too little of the picture: dense may tell
            dense = _dense(a, b)
            return dense if dense.match else found
    return _dense(a, b)


def _keypoints(a: LocalFeatures, b: LocalFeatures) -> Evidence:
    cv2 = cv2_module()
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(b.descriptors, a.descriptors, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    if len(good) < MIN_INLIERS:
        return Evidence("keypoints", False, inliers=0)
    src = b.points[[m.queryIdx for m in good]]
    dst = a.points[[m.trainIdx for m in good]]
    cv2.setRNGSeed(len(good))  # RANSAC's samples: the same pair gets the same verdict in every process and thread
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
    agreement, correlation, _, conflict, occluded = _agreement(a.thumb, b.thumb, thumb, coverage >= OCCLUDER_COVERAGE)
    smaller = min(a.size[0] * a.size[1], b.size[0] * b.size[1] * scale ** 2)
    explained = coverage >= MIN_COVERAGE or (  # or the pixels confirm it, as the dense check would
        agreement >= DENSE_AGREEMENT and correlation >= DENSE_NCC and conflict <= MAX_CONFLICT)
    if explained and agreement >= MIN_AGREEMENT and conflict <= MAX_CONFLICT and overlap >= MIN_OVERLAP * smaller \
            and correlation >= MIN_NCC:
        match = True
    elif agreement < REFUTE_AGREEMENT or conflict > MAX_CONFLICT or overlap < MIN_OVERLAP * smaller \
            or correlation < MIN_NCC:  # aligned, the pictures differ as a whole (a clock at another hour)
        match = False
    else:  # the transform explains part of the pair: a sticker, a border, or a shared part: no verdict
        match = None
    return Evidence("keypoints", match, inliers, round(coverage, 3), round(agreement, 3),
                    round(correlation, 3), round(scale, 3), round(rotation, 2), region, round(conflict, 3))


def _dense(a: LocalFeatures, b: LocalFeatures) -> Evidence:
    """The thumbnails aligned by ECC from whole picture on whole picture, and from content on content (a
    uniform border or margin left out); the first start that matches, else the better-correlated one."""
    ta, tb = _common_blur(a.thumb, b.thumb)
    best = None
    for start in _starts(a.thumb, b.thumb):
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
    template, moving = _grey(ta), _grey(tb)
    near = cv2.warpAffine(moving, start, (wa, ha), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    inside = cv2.warpAffine(np.ones_like(moving), start, (wa, ha), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
    coarse = max(wa, ha) / 16  # the pictures' coarse shapes, where the start places one on the other
    weight = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), coarse) + 1e-6  # blurred inside the overlap only

    def shape(x):
        return cv2.GaussianBlur(x * inside, (0, 0), coarse) / weight

    coarse_t, coarse_s = shape(template)[inside], shape(near)[inside]
    shapeless = max(coarse_t.std(), coarse_s.std()) < TEXTURE  # a fine texture (bricks, gravel): no coarse shape
    if inside.sum() < 16 or (not shapeless and _ncc(coarse_t, coarse_s) < DENSE_START):
        return Evidence("dense", False)  # not near one another to begin with: ECC aligns only nearby pictures
    try:
        _, warp = cv2.findTransformECC(template, moving, start.copy(), cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-4), None, 1)
    except cv2.error:
        warp = start
    # the warp maps a -> b; as b -> a it is the member placed on the keeper
    matrix = cv2.invertAffineTransform(warp)
    sx, sy = math.hypot(*matrix[:, 0]), math.hypot(*matrix[:, 1])
    shear = abs(float(matrix[:, 0] @ matrix[:, 1])) / (sx * sy)
    scale, rotation = _similarity(matrix)
    scale *= a.size[0] / a.thumb.shape[1] / (b.size[0] / b.thumb.shape[1])  # in the keypoints' frames
    agreement, correlation, covered, conflict, _ = _agreement(ta, tb, matrix, False)
    region, overlap = _overlap(matrix, (wb, hb), (wa, ha))
    smaller = min(wa * ha, wb * hb * sx * sy)
    match = (max(sx, sy) / min(sx, sy) < 1.06 and shear < 0.05 and overlap >= 0.5 * smaller
             and agreement >= DENSE_AGREEMENT and correlation >= DENSE_NCC and conflict <= MAX_CONFLICT)
    return Evidence("dense", bool(match), 0, round(covered, 3), round(agreement, 3), round(correlation, 3),
                    round(scale, 3), round(rotation, 2), region, round(conflict, 3))


def _starts(ta: np.ndarray, tb: np.ndarray) -> list[np.ndarray]:
    """ECC's starting warps (a's pixel -> b's pixel): whole on whole, then content box on content box."""
    (ha, wa), (hb, wb) = ta.shape[:2], tb.shape[:2]
    starts = [np.array([[wb / wa, 0, 0], [0, hb / ha, 0]], np.float32)]
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _content(ta), _content(tb)
    if (ax1 - ax0) * (ay1 - ay0) < 0.97 * wa * ha or (bx1 - bx0) * (by1 - by0) < 0.97 * wb * hb:
        gx, gy = (bx1 - bx0) / (ax1 - ax0), (by1 - by0) / (ay1 - ay0)
        starts.append(np.array([[gx, 0, bx0 - ax0 * gx], [0, gy, by0 - ay0 * gy]], np.float32))
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


def _common_blur(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two thumbnails at the sharpness of the blurrier: a half-size copy's thumbnail is an enlarged
    small picture, softer than its original's; the sharper one is blurred until it is no sharper."""
    cv2 = cv2_module()
    sharp_a, sharp_b = _sharpness(ta), _sharpness(tb)
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
    grey = _grey(thumb)
    gy, gx = np.gradient(grey)
    return float((gx * gx + gy * gy).mean() / max(float(grey.var()), 1e-6))


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32).mean(2)


def _similarity(matrix: np.ndarray) -> tuple[float, float]:
    scale = math.sqrt(abs(float(np.linalg.det(matrix[:, :2]))))
    return scale, math.degrees(math.atan2(float(matrix[1, 0]), float(matrix[0, 0])))


def _overlap(matrix: np.ndarray, size_b, size_a) -> tuple[tuple, float]:
    """(region of a covered by b as fractions (x0, y0, x1, y1), the overlap's area in a's pixels)."""
    cv2 = cv2_module()
    (wb, hb), (wa, ha) = size_b, size_a
    corners = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], np.float32)
    placed = corners @ matrix[:, :2].T.astype(np.float32) + matrix[:, 2].astype(np.float32)
    rect = np.array([[0, 0], [wa, 0], [wa, ha], [0, ha]], np.float32)
    area, shared = cv2.intersectConvexConvex(cv2.convexHull(placed), rect)
    if shared is None or area <= 0:
        return (0.0, 0.0, 0.0, 0.0), 0.0
    shared = shared.reshape(-1, 2)
    lo, hi = shared.min(0) / (wa, ha), shared.max(0) / (wa, ha)
    region = tuple(round(float(min(1.0, max(0.0, v))), 3) for v in (*lo, *hi))
    return region, float(area)


def _to_thumb(matrix: np.ndarray, b: LocalFeatures, a: LocalFeatures) -> np.ndarray:
    """The b -> a transform of the keypoints' frames, between the thumbnails' frames."""
    sa = a.thumb.shape[1] / a.size[0]
    sb = b.thumb.shape[1] / b.size[0]
    out = matrix.astype(np.float64).copy()
    out[:, :2] *= sa / sb
    out[:, 2] *= sa
    return out


def _agreement(ta: np.ndarray, tb: np.ndarray, matrix: np.ndarray,
               occluder: bool = False) -> tuple[float, float, float, float, float]:
    """(share of informative blocks that agree, grey correlation over the overlap, overlap over a's thumbnail,
    share of the blocks textured on both sides that disagree: another emblem on one flag, another number).

    ``tb`` (RGB) is placed on ``ta`` by ``matrix``; its colours are mapped onto ``ta``'s by a gain and an
    offset per channel (fitted on the overlap, the worst-fitting pixels left out, in whichever direction
    fits better), which a change of brightness, contrast or saturation or a tint allows and a recolouring
    (another flag, a softball for a baseball) does not.  A textured block agrees when its pixels
    correlate (BLOCK_NCC) and its colours are close; a flat block counts only when its colour differs.
    """
    cv2 = cv2_module()
    h, w = ta.shape[:2]
    placed = cv2.warpAffine(tb.astype(np.float32), matrix, (w, h), flags=cv2.INTER_LINEAR)
    valid = cv2.warpAffine(np.ones(tb.shape[:2], np.float32), matrix, (w, h), flags=cv2.INTER_NEAREST) > 0.5
    valid = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    covered = float(valid.mean())
    if valid.sum() < 16:
        return 0.0, 0.0, covered, 1.0, 0.0
    target, source = _mapped(ta.astype(np.float32), placed, valid)
    # the overlap's edge (a border's seam, the frame's last pixels) mixes in what lies outside when either
    # picture was resampled: EDGE pixels of it are left out, and a block counts on its other pixels
    inner = cv2.erode(np.pad(valid, 1).astype(np.uint8), np.ones((2 * EDGE + 1,) * 2, np.uint8))[1:-1, 1:-1] > 0
    grey_t, grey_s = target.mean(2), source.mean(2)
    correlation = _ncc(grey_t[inner], grey_s[inner]) if inner.sum() >= 16 else _ncc(grey_t[valid], grey_s[valid])
    rows, cols = h // BLOCK, w // BLOCK

    def blocks(x):  # (rows * cols, BLOCK * BLOCK, ...) of the thumbnail's whole blocks
        x = x[:rows * BLOCK, :cols * BLOCK]
        x = x.reshape(rows, BLOCK, cols, BLOCK, *x.shape[2:]).swapaxes(1, 2)
        return x.reshape(rows * cols, BLOCK * BLOCK, *x.shape[4:])

    use = blocks(inner).astype(np.float32)
    whole = use.sum(1) >= 0.75 * BLOCK * BLOCK  # a block counts with three quarters of its pixels inside
    use = use[whole]
    n = use.sum(1)

    def mean(x):  # per block over its inner pixels
        return (x * (use if x.ndim == 2 else use[..., None])).sum(1) / (n if x.ndim == 2 else n[:, None])

    pt, ps = blocks(grey_t)[whole], blocks(grey_s)[whole]
    diff = mean(np.abs(blocks(target)[whole] - blocks(source)[whole])).max(1)  # the worst channel's
    ct, cs = (pt - mean(pt)[:, None]) * use, (ps - mean(ps)[:, None]) * use
    st, ss = np.sqrt(mean(ct * ct)), np.sqrt(mean(cs * cs))
    textured = np.maximum(st, ss) >= TEXTURE
    ncc = (ct * cs).sum(1) / np.maximum(np.sqrt((ct * ct).sum(1) * (cs * cs).sum(1)), 1e-6)
    # a block agrees when its pixels correlate, or differ by less than the eye sees (a faint texture that
    # resampling or JPEG decorrelates), and its colours are close
    alike = (ncc >= BLOCK_NCC) | (mean(np.abs(pt - ps)) < VISIBLE)
    agree = textured & (np.minimum(st, ss) >= TEXTURE / 2) & (diff < TEXTURED_DIFF) & alike
    # a block flat on one side only (a sticker, a caption box over the picture) counts OCCLUDED_WEIGHT
    weight = np.where(textured & (np.minimum(st, ss) < TEXTURE / 2), OCCLUDED_WEIGHT, 1.0)
    counts = (weight * textured) + (~textured & (diff >= FLAT_DIFF))  # flat, another colour: counts, disagrees
    both = np.minimum(st, ss) >= TEXTURE  # textured on both sides: an edit keeps these, another picture not
    hidden = _occluder((rows, cols), whole, counts > 0, agree, st, ss, mean(pt), mean(ps), diff) if occluder else \
        np.zeros(len(st), bool)
    if hidden.any():  # leave the occluder and its edge out; the rest must agree as an unoccluded pair would
        counts, both = counts * ~hidden, both & ~hidden
        covered_by = np.repeat(np.repeat(_grid(hidden, whole, (rows, cols)), BLOCK, 0), BLOCK, 1)
        keep = inner & ~np.pad(covered_by, ((0, h - rows * BLOCK), (0, w - cols * BLOCK)))
        correlation = _ncc(grey_t[keep], grey_s[keep]) if keep.sum() >= 16 else correlation
    counted = float(counts.sum())
    conflict = float((both & ~agree).sum()) / max(int(both.sum()), 1)
    agreement = float((weight * agree * (counts > 0)).sum()) / counted if counted else 0.0
    return agreement, correlation, covered, conflict, float(hidden.sum()) / max(int(whole.sum()), 1)


def _grid(values: np.ndarray, whole: np.ndarray, shape: tuple) -> np.ndarray:
    out = np.zeros(shape[0] * shape[1], values.dtype)
    out[whole] = values
    return out.reshape(shape)


def _occluder(shape, whole, counts, agree, st, ss, mt, ms, diff) -> np.ndarray:
    """The blocks (of ``whole``) a flat occluder covers, its edges included: one compact region of blocks
    that disagree, flat on one side only and of one colour there (a sticker, a caption box, a
    redaction), at most MAX_OCCLUDED of the blocks; none otherwise (a disagreement in several places
    or with content on both sides: a clock's hands at another hour, another emblem on a flag)."""
    cv2 = cv2_module()
    none = np.zeros(len(st), bool)
    wrong = _grid(counts & ~agree, whole, shape).astype(np.uint8)
    if wrong.sum() < 2:
        return none
    n, labels = cv2.connectedComponents(wrong, connectivity=8)
    sizes = np.bincount(labels.ravel(), minlength=n)[1:]
    region = labels == 1 + int(np.argmax(sizes))
    if sizes.max() < 0.8 * wrong.sum():  # the disagreement is scattered: not one occluder
        return none
    ys, xs = np.nonzero(region)
    box = np.zeros(shape, bool)
    box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    inside = box.ravel()[whole]
    flat_t, flat_s = st[inside] < TEXTURE, ss[inside] < TEXTURE
    sides = ((flat_t, flat_s, mt[inside]), (flat_s, flat_t, ms[inside]))
    for flat, other, means in sides:
        # the occluder's inside is flat on its side (its edges are blocks it covers in part), the picture's not,
        # of one colour, another than the picture's there (a keycap's background where the other has a digit is not)
        if flat.sum() >= 2 and flat.sum() >= 3 * other.sum() and np.ptp(means[flat]) < FLAT_DIFF \
                and diff[inside][flat].mean() >= FLAT_DIFF:
            return inside if inside.mean() <= MAX_OCCLUDED else none
    return none


def _mapped(ta: np.ndarray, placed: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(target, source) thumbnails with one's colours mapped onto the other's, the better-fitting way."""
    best = None
    for target, source in ((ta, placed), (placed, ta)):
        mapped = _fit_channels(source, target, valid)
        error = float(np.abs(mapped - target)[valid].mean())
        if best is None or error < best[0]:
            best = (error, target, mapped)
    return best[1], best[2]


def _fit_channels(source: np.ndarray, target: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``source`` with a gain (0.25 to 4) and offset per channel fitted to ``target`` on ``valid``, as long as the
    channels move together (gains within MAX_GAIN_RATIO, offsets within MAX_OFFSET_SPREAD: brightness,
    contrast, saturation); otherwise one gain and offset for all three (a recolouring is not fitted)."""
    x, y = source[valid], target[valid]  # (n, 3)
    gain, offset = _fit(x, y)
    if gain.max() / gain.min() > MAX_GAIN_RATIO or np.ptp(offset) > MAX_OFFSET_SPREAD:
        gain, offset = _fit(x.reshape(-1, 1), y.reshape(-1, 1))
    return gain * source + offset


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) per column of ``x`` (n, c) onto ``y``, fitted again without the worst quarter."""
    use = np.ones(x.shape, bool)
    keep = max(1, (3 * len(x)) // 4)
    for _ in range(2):  # fit, then again without the worst quarter (a sticker, an occluded corner)
        count = np.maximum(use.sum(0), 1)
        mx, my = (x * use).sum(0) / count, (y * use).sum(0) / count
        var = (((x - mx) ** 2) * use).sum(0) / count
        gain = np.clip((((x - mx) * (y - my)) * use).sum(0) / count / np.maximum(var, 1.0), 0.25, 4)
        residual = np.abs(gain * (x - mx) + my - y)
        use = residual <= np.partition(residual, keep - 1, axis=0)[keep - 1]
    return gain, my - gain * mx


def _ncc(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm > 0 else 0.0
