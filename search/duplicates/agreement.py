"""Do two aligned thumbnails show one picture?  Block by block, colours fitted, an occluder left out.

``compare_blocks(ta, tb, matrix, occluder)`` places ``tb`` on ``ta`` and answers
(agreement, correlation, covered, conflict, occluded, detail); the duplicates
verifier (``search/duplicates/verifier.py``) judges a pair by these numbers.
"""

from __future__ import annotations

import math

import numpy as np

from imgsearch.indexer.inputs.local_features import cv2_module

BLOCK = 8  # pixels of a thumbnail block
BLOCK_NCC = 0.5
TEXTURE = 4.0  # grey levels of standard deviation that make a block textured
FLAT_DIFF = 20.0  # grey levels: a flat block this far from the other's colour disagrees
TEXTURED_DIFF = 40.0
OCCLUDED_WEIGHT = 0.5  # of a block flat on one side only
MAX_GAIN_RATIO = 1.5  # channels' gains of one colour change (saturation 1.8 on photos: under 1.3)
EDGE = 2  # thumbnail pixels along the overlap's edge left out of the blocks
VISIBLE = 6.0  # grey levels of mean difference under which a block agrees though it does not correlate
OCCLUDER_SIDE = 3  # blocks an occluder spans at least each way
OCCLUDER_FILL = 0.85  # share of its bounding box its disagreeing blocks fill (a rectangle, not a blob)
MAX_OCCLUDED = 0.5  # share of the overlap's blocks a flat occluder (a sticker) may cover, edge blocks included
MAX_OFFSET_SPREAD = 40.0  # grey levels between the channels' offsets
MAX_SATURATION = 2.5  # a colour change may scale the colours' distance from their grey this much either way
OUTLINE_FILL = 0.9  # share of its bounding rectangle an occluder over a flat part fills
OUTLINE_GAP = 2  # pixels across an occluder's outline: its inside against the picture beside it
DETAIL_DIFF = 80.0  # grey levels (the worst channel, colours fitted) of a pixel drawn otherwise in the other picture


_THIRD = np.full(3, 1 / 3, np.float32)
# the grey a change of saturation moves each colour towards or away from: luma (ITU-R BT.601), as Pillow's
# ImageEnhance.Color, ImageMagick's and most editors' saturation do (BT.709's weights, CSS's saturate(), are near it);
# the channels' plain mean is not: a saturated gold or blue moves off it (a flat picture's colour edit, scripts/
# bench_duplicates.py: 5 blocks of a jar's gold lid 42-49 grey levels off in one channel after the fit)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """The mean of the three channels, float32 (a product with (1/3, 1/3, 1/3): ten times ``mean(2)``'s speed)."""
    return rgb.astype(np.float32, copy=False) @ _THIRD


def compare_blocks(ta: np.ndarray, tb: np.ndarray, matrix: np.ndarray,
                   occluder: str | None = None) -> tuple[float, float, float, float, float, int]:
    """(share of informative blocks that agree, grey correlation over the overlap, overlap over a's thumbnail,
    share of the blocks textured on both sides that disagree: another emblem on one flag, another number,
    share of the blocks an occluder covered, left out, and the pixels of the largest part drawn otherwise:
    ``_detail``).

    ``tb`` (RGB) is placed on ``ta`` by ``matrix``; its colours are mapped onto ``ta``'s by a gain and an
    offset per channel (fitted on the overlap, the worst-fitting pixels left out, in whichever direction
    fits better; or one saturation, gain and offset for the three: ``_fit_saturation``, if it fits better),
    which a change of brightness, contrast or saturation or a tint allows and a recolouring
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
        return 0.0, 0.0, covered, 1.0, 0.0, 0
    ta = ta.astype(np.float32)
    target, source, unmapped = _mapped(ta, placed, valid)
    # the overlap's edge (a border's seam, the frame's last pixels) mixes in what lies outside when either
    # picture was resampled: EDGE pixels of it are left out, and a block counts on its other pixels
    inner = cv2.erode(np.pad(valid, 1).astype(np.uint8), np.ones((2 * EDGE + 1,) * 2, np.uint8))[1:-1, 1:-1] > 0
    grey_t, grey_s = grey_of(target), grey_of(source)
    correlation = correlate(grey_t[inner], grey_s[inner]) if inner.sum() >= 16 else correlate(grey_t[valid], grey_s[valid])
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

    def judge(target, source):  # each block's numbers, and whether it agrees, counts, is textured on both sides
        grey_t, grey_s = grey_of(target), grey_of(source)
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
        return grey_t, grey_s, (pt, ps, diff, st, ss), agree, weight, counts, both

    grey_t, grey_s, (pt, ps, diff, st, ss), agree, weight, counts, both = judge(target, source)
    hidden = _occluder((rows, cols), whole, counts > 0, agree, st, ss, mean(pt), mean(ps), diff,
                       (target, source, valid, unmapped), occluder == "any") if occluder else np.zeros(len(st), bool)
    if hidden.any():  # leave the occluder and its edge out; the rest must agree as an unoccluded pair would,
        # its colours fitted again without the occluder (a large one of a strong colour pulls the first fit)
        covered_by = np.pad(np.repeat(np.repeat(_grid(hidden, whole, (rows, cols)), BLOCK, 0), BLOCK, 1),
                            ((0, h - rows * BLOCK), (0, w - cols * BLOCK)))
        keep = inner & ~covered_by
        if keep.sum() >= 16:
            target, source, _ = _mapped(ta, placed, valid & ~covered_by)
            grey_t, grey_s, _, agree, weight, counts, both = judge(target, source)
            correlation = correlate(grey_t[keep], grey_s[keep])
        counts, both = counts * ~hidden, both & ~hidden
    counted = float(counts.sum())
    conflict = float((both & ~agree).sum()) / max(int(both.sum()), 1)
    agreement = float((weight * agree * (counts > 0)).sum()) / counted if counted else 0.0
    detail = 0 if hidden.any() else _detail(target, source, inner)  # an occluder's edge is judged by its rule
    return agreement, correlation, covered, conflict, float(hidden.sum()) / max(int(whole.sum()), 1), detail


def _detail(target: np.ndarray, source: np.ndarray, inner: np.ndarray) -> int:
    """The pixels of the largest patch, at least 3 pixels across everywhere, where the two pictures (colours
    fitted) differ by DETAIL_DIFF or more: a part drawn otherwise (another hand on a clock face, a bar across
    a 0 that makes it an 8, a man's hair on a figure), which an 8 x 8 block's correlation does not see when
    the rest of the block agrees.  An edit moves a pixel that far only along an edge that resampling or JPEG
    shifted, a line 1-2 pixels wide, which the opening by a 3 x 3 square removes."""
    cv2 = cv2_module()
    # the worst channel's difference, by OpenCV and two maximums (numpy's reduction over 3 values is 10x slower)
    diff = cv2.absdiff(np.asarray(target, np.float32), np.asarray(source, np.float32))
    strong = ((np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]) >= DETAIL_DIFF) & inner)
    if strong.sum() < 9:
        return 0
    strong = strong.view(np.uint8)
    opened = cv2.morphologyEx(strong, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


def _grid(values: np.ndarray, whole: np.ndarray, shape: tuple) -> np.ndarray:
    out = np.zeros(shape[0] * shape[1], values.dtype)
    out[whole] = values
    return out.reshape(shape)


def _occluder(shape, whole, counts, agree, st, ss, mt, ms, diff, pixels, by_blocks: bool) -> np.ndarray:
    """The blocks (of ``whole``) a flat occluder covers, its edges included: one compact region of blocks
    that disagree, flat on one side only and of one colour there (a sticker, a caption box, a
    redaction), at most MAX_OCCLUDED of the blocks, a rectangle of OCCLUDER_SIDE blocks or more
    that its blocks fill (OCCLUDER_FILL); none otherwise (a disagreement in several places
    or with content on both sides: a clock's hands at another hour, another emblem on a flag).  Over a part
    of the picture that is flat itself (sky, a wall), the occluder is flat on both sides: it is one then
    when its pixels make a rectangle whose outline is an edge in its picture only (``_outlined``: a band of
    another colour on a flag ends where the other flag's band ends too).  ``pixels``: (target, source,
    valid, unmapped): the thumbnails, the source's colours mapped onto the target's, their overlap, and the
    source as it is (an occluder's outline is a step in its own picture's colours, which a mapping fitted to
    the other may flatten); ``by_blocks``: False, only an outlined one."""
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
    if min(np.ptp(ys), np.ptp(xs)) + 1 < OCCLUDER_SIDE:
        return none  # a sticker spans blocks each way; a part drawn otherwise may be a small blob
    filled = region.sum() >= OCCLUDER_FILL * box.sum()  # a rectangle its blocks fill
    flat_t, flat_s = st[inside] < TEXTURE, ss[inside] < TEXTURE
    sides = ((flat_t, flat_s, mt[inside]), (flat_s, flat_t, ms[inside]))
    target, source, valid, unmapped = pixels
    box_px = tuple(BLOCK * v for v in (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1))
    for (flat, other, means), (occ, hid, raw) in zip(
            sides, ((target, source, (target, unmapped)), (source, target, (unmapped, target)))):
        # the occluder's inside is flat on its side (its edges are blocks it covers in part), of one colour,
        # another than the picture's there (a keycap's background where the other has a digit is not), and
        # its colour ends at its edge (a flag's field where the other flag has an emblem runs on around it);
        # the picture's is not flat there, or the occluder is a rectangle outlined in its picture only
        one_colour = flat.sum() >= 2 and np.ptp(means[flat]) < FLAT_DIFF and diff[inside][flat].mean() >= FLAT_DIFF
        over_texture = by_blocks and filled and one_colour and flat.sum() >= 3 * other.sum()
        # over texture the hidden picture may step at the outline too; over a flat part it may not
        rect = _outlined(occ, hid, valid, box_px, raw, over_flat=not over_texture)
        if rect is None:
            continue
        if over_texture:
            hidden = inside
        else:
            ry0, ry1, rx0, rx1 = rect  # the blocks it touches, its resampled seam (a pixel round it) included
            cover = np.zeros(shape, bool)
            cover[max(0, ry0 - 1) // BLOCK:ry1 // BLOCK + 1, max(0, rx0 - 1) // BLOCK:rx1 // BLOCK + 1] = True
            hidden = cover.ravel()[whole]
        return hidden if hidden.mean() <= MAX_OCCLUDED else none
    return none


def _outlined(occ: np.ndarray, hid: np.ndarray, valid: np.ndarray, box: tuple, raw: tuple,
              over_flat: bool) -> tuple | None:
    """The rectangle (y0, y1, x0, x1, in pixels) of an occluder near ``box`` (y0, y1, x0, x1), or None.

    Its pixels are the commonest colour of ``occ`` where it differs from ``hid`` in ``box``; they must fill a
    rectangle (OUTLINE_FILL) whose sides inside the overlap are a step in ``occ`` (FLAT_DIFF or more): a
    sticker's colour ends at its edge, a flag's field where the other flag has an emblem runs on around it.
    ``over_flat``: and, at most half that, in ``hid``: an occluder laid on a flat part, not a part drawn in
    both (a flag's band of another colour ends where the other flag's band ends).  The rectangle may reach
    past ``box`` (the blocks it covers in part agree).  ``occ`` and ``hid`` are colour-mapped onto each other
    (where they differ); ``raw``: the two as they are, whose colours make the rectangle and its steps."""
    y0, y1, x0, x1 = box
    inside = valid[y0:y1, x0:x1]
    shown = np.abs(occ[y0:y1, x0:x1] - hid[y0:y1, x0:x1]).max(2) >= FLAT_DIFF
    if (inside & shown).sum() < 2 * BLOCK * BLOCK:
        return None
    # its colour: the commonest (in steps of FLAT_DIFF / 2) of the pixels that differ from the other picture
    occ, hid = raw
    pixels = occ[y0:y1, x0:x1][inside & shown]
    bins = np.clip(pixels // (FLAT_DIFF / 2), 0, 255).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    values, counts = np.unique(bins, return_counts=True)
    colour = np.median(pixels[bins == values[np.argmax(counts)]], 0)
    h, w = valid.shape  # the rectangle is looked for a block around the box, where it may reach
    y0, y1, x0, x1 = max(0, y0 - BLOCK), min(h, y1 + BLOCK), max(0, x0 - BLOCK), min(w, x1 + BLOCK)
    cv2 = cv2_module()
    mask = valid[y0:y1, x0:x1] & (np.abs(occ[y0:y1, x0:x1] - colour).max(2) < FLAT_DIFF / 2)
    # opened: the picture's own pixels of about that colour (grass, gravel) touch it in specks, not in areas
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if n < 2:
        return None
    biggest = 1 + int(np.argmax(stats[1:, 4]))
    bx, by, bw, bh, area = (int(v) for v in stats[biggest])
    if area < 2 * BLOCK * BLOCK or min(bw, bh) < 2 * BLOCK or area < OUTLINE_FILL * bw * bh:
        return None
    ry0, ry1, rx0, rx1 = by + y0, by + bh + y0, bx + x0, bx + bw + x0
    steps = []  # (inside pixels, outside pixels) of each side of the rectangle that lies inside the overlap
    if ry0 - OUTLINE_GAP >= 0:
        steps.append(((ry0, slice(rx0, rx1)), (ry0 - OUTLINE_GAP, slice(rx0, rx1))))
    if ry1 - 1 + OUTLINE_GAP < h:
        steps.append(((ry1 - 1, slice(rx0, rx1)), (ry1 - 1 + OUTLINE_GAP, slice(rx0, rx1))))
    if rx0 - OUTLINE_GAP >= 0:
        steps.append(((slice(ry0, ry1), rx0), (slice(ry0, ry1), rx0 - OUTLINE_GAP)))
    if rx1 - 1 + OUTLINE_GAP < w:
        steps.append(((slice(ry0, ry1), rx1 - 1), (slice(ry0, ry1), rx1 - 1 + OUTLINE_GAP)))
    step_occ, step_hid, n = 0.0, 0.0, 0
    for a, b in steps:
        ok = valid[a] & valid[b]
        if ok.sum() < BLOCK:  # this side is the overlap's edge
            continue
        step_occ += float(np.abs(occ[a] - occ[b]).max(-1)[ok].sum())
        step_hid += float(np.abs(hid[a] - hid[b]).max(-1)[ok].sum())
        n += int(ok.sum())
    if n >= 2 * BLOCK and step_occ / n >= FLAT_DIFF and (not over_flat or step_hid <= 0.5 * step_occ):
        return ry0, ry1, rx0, rx1
    return None


def _mapped(ta: np.ndarray, placed: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(target, source, unmapped): the two thumbnails, the source's colours mapped onto the target's, whichever
    way fits better, and the source as it was.  A mapped colour is clipped to 0..255, as an edit's output is:
    a colour pushed past the range by a saturation or contrast change stays at its end (a gold lid's blue at 0),
    which the fits leave out (it is among the worst-fitting pixels) and the clipped mapping then agrees with.
    The fits are compared on the target's colours that are not at an end of the range (``_error``): a clipped
    colour says only that the mapped one reached past it, and a white background would favour any mapping that
    pushes it past 255 (a re-encoded drawing on white was refuted then)."""
    pixels = np.ascontiguousarray(ta[valid].T), np.ascontiguousarray(placed[valid].T)  # (3, n): the overlap's
    best = None
    for (target, source), (y, x) in zip(((ta, placed), (placed, ta)), (pixels, pixels[::-1])):
        inside = (y > 0) & (y < 255)
        inside = inside if inside.any() else slice(None)  # a black-and-white target: every colour
        gain, offset = _fit_channels(x, y)
        error = _error(gain[:, None] * x + offset[:, None], y, inside)
        if best is None or error < best[0]:
            best = (error, target, source, (gain, offset, 0.0))
        luma = LUMA @ x  # (n,)
        saturated = _fit_saturation(x, y, luma)
        if saturated is not None:
            alpha, beta, offset = saturated
            error = _error(alpha * x + beta * luma + offset, y, inside)
            if error < best[0]:
                best = (error, target, source, (np.full(3, alpha), np.full(3, offset), beta))
    _, target, source, (gain, offset, beta) = best
    return target, _clipped(gain * source + offset + (beta * (source @ LUMA)[..., None] if beta else 0.0)), source


def _clipped(x: np.ndarray) -> np.ndarray:
    """``x`` (a fresh array) clipped to the colours' range 0..255, in place."""
    return np.clip(x, 0.0, 255.0, out=x)


def _error(mapped: np.ndarray, y: np.ndarray, inside) -> float:
    """The mean distance of the clipped ``mapped`` colours (3, n) to ``y``'s, where ``inside`` (the colours of
    ``y`` not at an end of the range)."""
    return float(np.abs(_clipped(mapped) - y)[inside].mean())


def _fit_saturation(x: np.ndarray, y: np.ndarray, grey: np.ndarray) -> tuple[float, float, float] | None:
    """(alpha, beta, offset) of one change of saturation, contrast and brightness mapping ``x`` (3, n) onto
    ``y``: y = alpha * x + beta * grey + offset in every channel, ``grey`` (n,) being each pixel's luma (a gain
    ``a`` = alpha + beta, a saturation ``s`` = alpha / a: each pixel's colour moved towards or away from its
    luma, never to another hue), fitted again without the worst quarter; None when the gain is outside 0.25 to
    4 or the saturation outside 1 / MAX_SATURATION to MAX_SATURATION (a recolouring is not fitted)."""
    keep = None
    for _ in range(2):  # fit, then again without the worst quarter (a sticker, an occluded corner)
        u, w, t = (x, np.broadcast_to(grey, x.shape), y) if keep is None else (x * keep, grey * keep, y * keep)
        count = float(x.size if keep is None else keep.sum())
        su, sw, st, suw = float(u.sum()), float(w.sum()), float(t.sum()), float((u * w).sum())
        normal = np.array([[float((u * u).sum()), suw, su],
                           [suw, float((w * w).sum()), sw],
                           [su, sw, count]], np.float64)
        rhs = np.array([float((u * t).sum()), float((w * t).sum()), st], np.float64)
        try:
            alpha, beta, offset = np.linalg.solve(normal, rhs)
        except np.linalg.LinAlgError:  # a flat overlap: no saturation to speak of
            return None
        residual = np.abs(alpha * x + beta * grey + offset - y)
        keep = residual <= np.partition(residual.ravel(), (3 * x.size) // 4)[(3 * x.size) // 4]
    gain = alpha + beta
    if not 0.25 <= gain <= 4 or not 1 / MAX_SATURATION <= alpha / gain <= MAX_SATURATION:
        return None
    return float(alpha), float(beta), float(offset)


def _fit_channels(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) of the channels of ``x`` (3, n) onto ``y``: a gain (0.25 to 4) and an offset per channel, as
    long as the channels move together (gains within MAX_GAIN_RATIO, offsets within MAX_OFFSET_SPREAD:
    brightness, contrast, saturation); otherwise one gain and offset for all three (a recolouring is not fitted)."""
    gain, offset = _fit(x, y)
    if gain.max() / gain.min() > MAX_GAIN_RATIO or np.ptp(offset) > MAX_OFFSET_SPREAD:
        gain, offset = _fit(x.reshape(1, -1), y.reshape(1, -1))
    return gain, offset


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gain, offset) per row of ``x`` (c, n) onto ``y``, fitted again without the worst quarter."""
    keep = max(1, (3 * x.shape[1]) // 4)
    gain, mx, my = _fit_on(x, y, None)  # fit, then again without the worst quarter (a sticker, an occluded corner)
    residual = np.abs(gain * (x - mx) + my - y)
    gain, mx, my = _fit_on(x, y, residual <= np.partition(residual, keep - 1, axis=1)[:, keep - 1:keep])
    return gain.ravel(), (my - gain * mx).ravel()


def _fit_on(x: np.ndarray, y: np.ndarray, use: np.ndarray | None) -> tuple:
    """(gain, mean of x, mean of y) per row of ``x`` (c, n) over ``use`` (None: every column), as (c, 1)."""
    if use is None:
        count = max(x.shape[1], 1)
        mx, my = x.sum(1, keepdims=True) / count, y.sum(1, keepdims=True) / count
        dx = x - mx
        var = (dx * dx).sum(1, keepdims=True) / count
        covariance = (dx * (y - my)).sum(1, keepdims=True) / count
    else:
        count = np.maximum(use.sum(1, keepdims=True), 1)
        x, y = x * use, y * use
        mx, my = x.sum(1, keepdims=True) / count, y.sum(1, keepdims=True) / count
        dx = (x - mx) * use
        var = (dx * dx).sum(1, keepdims=True) / count
        covariance = (dx * (y - my)).sum(1, keepdims=True) / count
    return np.clip(covariance / np.maximum(var, 1.0), 0.25, 4), mx, my


def correlate(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm > 0 else 0.0
