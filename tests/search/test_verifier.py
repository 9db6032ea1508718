"""The duplicates verifier (search/duplicates/verifier.py): the same picture edited is one, a similar picture is not.

Real OpenCV on real pictures made at test time: scikit-image's photographs and
their edits (indexer/inputs/near_duplicates.py), Google's emoji (npm), and
scikit-learn's handwritten digits.  Look-alikes share parts (a medal's ribbon,
a ball's stitching, a dog's face, a digit's stroke); edits share everything
but what the edit changed.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from imgsearch.indexer.inputs.local_features import local_features
from imgsearch.indexer.inputs.near_duplicates import EDITS, originals
from imgsearch.search.duplicates.verifier import compare

# (the look-alikes a user found grouped on the emoji demo, issue 31), each pair two different emoji
# The star and the glowing star, two clock faces: the differing part is a few blocks of the 64-pixel thumbnail,
# but aligned, the pictures do not correlate as one picture edited does (verifier.MIN_NCC).
LOOKALIKE_EMOJI = [("first_place_medal", "second_place_medal"),
                   ("first_place_medal", "third_place_medal"),
                   ("second_place_medal", "third_place_medal"),
                   ("first_place_medal", "sports_medal"),
                   ("third_place_medal", "sports_medal"), ("baseball", "softball"), ("dog", "dog2"),
                   ("cat", "cat2"), ("star", "star2"), ("volleyball", "soccer"),
                   ("tennis", "basketball"), ("one", "two"),
                   ("two", "seven"),  # the keycap's frame carries the inliers; the glyphs conflict in 0.06
                   ("clock1", "clock2"),
                   # one figure drawn as a woman and as a man: the keypoints align all but the head and the hair,
                   # whose blocks conflict (over 0.07 of those textured in both; true edits: 0 in 95 % of pairs)
                   ("woman_in_motorized_wheelchair", "man_in_motorized_wheelchair"),
                   ("man_with_probing_cane", "man-walking"), ("mage", "female_mage"),
                   # another emblem on one field, another door on one mailbox, a slash over one phone: the field
                   # around the difference is the same colour as the "sticker" on the plain side, so no outline
                   # bounds it there (a sticker's rectangle is a step in its own picture)
                   ("flag-al", "flag-vn"), ("flag-ta", "flag-ms"), ("mailbox", "mailbox_with_mail"),
                   ("no_mobile_phones", "mute")]

# one drawing with a part drawn otherwise, which the emoji demo grouped while every block agreed or correlated as a
# whole: an 8's bar over a 0, a clock's hour hand, a tear, drops of sweat, snow, a man's hair on a figure, a coat
# of arms on one tricolour (verifier.MAX_DETAIL: the part's thumbnail pixels that differ strongly, 3 pixels across)
DRAWN_OTHERWISE = [("zero", "eight"), ("clock11", "clock12"), ("upside_down_face", "smiling_face_with_tear"),
                   ("smile", "sweat_smile"), ("snowman", "snowman_without_snow"),
                   ("technologist", "male-technologist"), ("surfer", "man-surfing"), ("bicyclist", "woman-biking"),
                   ("flag-co", "flag-ec")]


def _decoded(edited) -> Image.Image:
    return Image.open(io.BytesIO(edited)).convert("RGB") if isinstance(edited, bytes) else edited


@pytest.fixture(scope="module")
def emoji():
    from imgsearch.indexer.inputs.samples import emoji_records

    records = {r["name"]: r for r in emoji_records()}
    out = {}
    for name in {n for pair in LOOKALIKE_EMOJI + DRAWN_OTHERWISE for n in getattr(pair, "values", pair)}:
        with Image.open(records[name]["file"]) as img:
            rgba = img.convert("RGBA")
        out[name] = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return out


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images, data.target


@pytest.mark.parametrize("a, b", LOOKALIKE_EMOJI)
def test_emoji_that_share_parts_are_not_one_picture(emoji, a, b):
    for keeper, member in ((a, b), (b, a)):
        found = compare(local_features(emoji[keeper]), local_features(emoji[member]))
        assert found.match is False, (keeper, member, found)


@pytest.mark.parametrize("a, b", DRAWN_OTHERWISE)
def test_a_part_drawn_otherwise_makes_another_picture_and_edits_of_each_stay_one(emoji, a, b):
    from imgsearch.search.duplicates.verifier import MAX_DETAIL

    both = [compare(local_features(emoji[keeper]), local_features(emoji[member])) for keeper, member in ((a, b), (b, a))]
    assert [found.match for found in both] == [False, False], both
    assert max(found.detail for found in both) >= MAX_DETAIL  # the part drawn otherwise refuted it one way at least
    rng = np.random.default_rng(5)
    for name in (a, b):  # edited, every part is in its place: no part drawn otherwise (whatever else the check
        base = local_features(emoji[name])  # says: a flag at JPEG 20 conflicts in blocks, test_emoji_edits_...)
        for edit in ("jpeg20", "colour", "half", "border", "rotate10", "crop80"):
            found = compare(base, local_features(_decoded(EDITS[edit](emoji[name], rng))))
            assert found.detail < MAX_DETAIL, (name, edit, found)


@pytest.mark.xfail(strict=True, reason="a clock tile cropped to 80 % finds too few keypoint matches and the "
                                        "dense check does not align the crop (ECC ends at the edge of a similarity: it "
                                        "matched with 20 iterations on the mean(2) grey, not with 40, nor on today's grey)")
def test_photo_edits_are_one_picture_and_tiles_of_one_photo_are_not():
    rng = np.random.default_rng(3)
    tiles = dict(originals())
    names = ["astronaut-0-0", "coffee-0-1", "rocket-1-2", "chelsea-0-0", "clock-0-1", "camera-1-0"]
    matched = total = 0
    for name in names:
        base = local_features(tiles[name])
        for edit, fn in EDITS.items():
            found = compare(base, local_features(_decoded(fn(tiles[name], rng))))
            matched += bool(found.match)
            total += 1
            if edit in ("half", "jpeg20", "colour", "crop80"):  # the easy ones: every one
                assert found.match, (name, edit, found)
    assert matched >= 0.85 * total, f"{matched} of {total} edits matched"
    for photo in ("gravel", "brick", "grass", "retina", "hubble_deep_field"):
        same_photo = [n for n in tiles if n.rsplit("-", 2)[0] == photo]
        for x in same_photo[:3]:
            for y in same_photo[:3]:
                if x != y:  # two tiles of one texture: similar, never one picture
                    assert compare(local_features(tiles[x]), local_features(tiles[y])).match is False, (x, y)


@pytest.mark.xfail(strict=True, reason="the sports medal re-encoded at JPEG 20 is missed (its blocks conflict: 0.14)")
def test_emoji_edits_are_one_picture(emoji):
    rng = np.random.default_rng(4)
    for name, picture in emoji.items():
        base = local_features(picture)
        for edit in ("crop80", "jpeg20", "colour", "border", "rotate10"):
            found = compare(base, local_features(_decoded(EDITS[edit](picture, rng))))
            assert found.match, (name, edit, found)


def _digit(pixels: np.ndarray, colour=(255, 255, 255)) -> Image.Image:
    """An 8 x 8 digit (0..16) drawn in ``colour`` on black, at 32 x 32 as a small scan would be."""
    grey = Image.fromarray(np.uint8(pixels * 255 / 16)).resize((32, 32), Image.BILINEAR)
    return ImageOps.colorize(grey, (0, 0, 0), colour)


@pytest.mark.slow  # a measurement over 560 pairs of real digits, like tests/quality/
@pytest.mark.xfail(strict=True, reason="measured 3 of 560 pairs of 8 x 8 digits called one picture")
def test_two_handwritten_digits_of_one_class_are_kept_apart(digits):
    images, target = digits
    false = total = 0
    for digit in range(10):
        same = np.flatnonzero(target == digit)[:8]
        feats = [local_features(_digit(images[i])) for i in same]
        for i in range(len(feats)):
            for j in range(len(feats)):
                if i != j and not np.array_equal(images[same[i]], images[same[j]]):
                    total += 1
                    false += bool(compare(feats[i], feats[j]).match)
    assert false == 0, f"{false} of {total} pairs of different digits called one picture"


def test_a_brighter_darker_or_re_encoded_digit_is_one_picture(digits):
    images, _ = digits
    for i in range(0, 200, 20):
        base = _digit(images[i])
        buffer = io.BytesIO()
        base.save(buffer, "JPEG", quality=30)
        for edited in (ImageEnhance.Brightness(base).enhance(0.7), ImageEnhance.Contrast(base).enhance(1.4),
                       _digit(images[i], (200, 200, 200)), Image.open(buffer).convert("RGB"),
                       base.resize((64, 64), Image.BICUBIC)):
            found = compare(local_features(base), local_features(edited))
            assert found.match, (i, found)


@pytest.mark.parametrize("shape", ["square", "heart", "digit"])
def test_one_drawing_in_another_colour_is_another_picture(shape, digits):
    """A recolouring is not an edit of one picture: the blue and the green heart, the red and the yellow
    square, a white digit and an orange one (a baseball and a softball are one drawing, recoloured)."""
    from PIL import ImageDraw

    def drawn(colour):
        if shape == "digit":
            return _digit(digits[0][7], colour)
        img = Image.new("RGB", (64, 64), "white")
        draw = ImageDraw.Draw(img)
        if shape == "square":
            draw.rectangle((8, 8, 55, 55), fill=colour)
        else:
            draw.ellipse((6, 8, 32, 34), fill=colour)
            draw.ellipse((30, 8, 56, 34), fill=colour)
            draw.polygon([(8, 26), (56, 26), (32, 56)], fill=colour)
        return img

    colours = [(220, 40, 40), (250, 210, 40), (40, 120, 230), (60, 180, 80)]
    if shape == "digit":
        colours = [(255, 255, 255), (255, 150, 30), (60, 200, 255)]
    for a in colours:
        for b in colours:
            if a != b:
                assert not compare(local_features(drawn(a)), local_features(drawn(b))).match, (a, b)


def test_a_flat_sticker_over_a_photo_is_one_picture():
    """A solid rectangle pasted over a fifth of a photo (a sticker, a caption box) is one compact region,
    flat on one side only and of another colour than what it hides: left out, the rest agrees.  (A keycap's
    flat background where another keycap has its digit is the picture's own colour: not an occluder; the
    keycap pairs of LOOKALIKE_EMOJI.)"""
    from PIL import ImageDraw

    tiles = dict(originals())
    for name, box, colour in (("astronaut-0-0", (20, 40, 130, 150), (30, 200, 90)),
                              ("coffee-0-1", (60, 10, 170, 110), (250, 240, 20))):
        stuck = tiles[name].copy()
        ImageDraw.Draw(stuck).rectangle(box, fill=colour)
        found = compare(local_features(tiles[name]), local_features(stuck))
        assert found.match, (name, found)


def test_a_sticker_over_a_flat_part_of_a_photo_is_one_picture():
    """The benchmark's sticker edit on every tile (a solid rectangle over about a fifth, at a seeded place):
    where it covers a flat part of the photo (sky, a wall), both pictures are flat there, and the sticker is
    told from a part drawn in another colour by its outline, an edge in its picture only.  Before, none of
    the 32 stickers over a flat part was one picture with its original (23 of the 44 over texture)."""
    from imgsearch.indexer.inputs.near_duplicates import near_duplicate_set

    items = near_duplicate_set({"occlude": EDITS["occlude"]}, seed=0)
    originals_ = {i.group: i.image for i in items if i.edit == "original"}
    found = {"flat": [], "textured": []}
    for item in (i for i in items if i.edit == "occlude"):
        a, b = np.asarray(originals_[item.group], np.float32), np.asarray(item.image, np.float32)
        ys, xs = np.nonzero(np.abs(a - b).max(2) > 0)
        under = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean(2)
        kind = "flat" if under.std() < 25 else "textured"
        found[kind].append(bool(compare(local_features(originals_[item.group]), local_features(item.image)).match))
    assert len(found["flat"]) >= 20 and len(found["textured"]) >= 20
    assert np.mean(found["flat"]) >= 0.5, found  # 19 of 32 measured
    assert np.mean(found["textured"]) >= 0.8, found  # 38 of 44 measured


def test_a_photo_made_more_vivid_darker_and_more_contrasted_is_one_picture():
    """The benchmark's colour edit (saturation x1.4-1.8, brightness x0.75-0.9, contrast x1.1-1.3) moves each
    colour away from its grey: no gain and offset per channel maps a many-coloured photo so, and tiles 23, 57,
    59, 63 and 65 were refuted (their blocks' colours conflicted); one saturation, gain and offset for the
    three channels maps it (agreement._fit_saturation), and never to another hue (the recolourings above)."""
    tiles = originals()
    missed = []
    for k, (_, img) in enumerate(tiles):
        edited = EDITS["colour"](img, np.random.default_rng(k))
        if not compare(local_features(img), local_features(edited)).match:
            missed.append(k)
    assert not {23, 57, 59, 63, 65} & set(missed)
    assert len(missed) <= 5, missed  # measured: 28, 30, 31, 61, 62, pictures without corners ECC does not align


@pytest.mark.parametrize("name", ["jar", "flag-bo", "flag-ea", "bulb", "tangerine", "flag-st", "luggage"])
def test_a_flat_picture_made_more_vivid_is_one_picture_though_its_colours_clip(name):
    """The benchmark's colour edit on a flat picture of saturated colours: Pillow's saturation moves each colour
    away from its luma (not the channels' mean), and pushes a gold lid's blue, a flag's red past the range, where
    it stays at 0 or 255.  Each of these was refuted (its blocks' colours conflicted: 0.08-0.31) until the colour
    fits moved colours about the luma, clipped the mapped colours and were compared where the target was not
    clipped (agreement._mapped); over 158 Noto emoji, 12 colour edits were missed before, 5 after."""
    from imgsearch.indexer.inputs.samples import emoji_records

    record = next(r for r in emoji_records() if r["name"] == name)
    with Image.open(record["file"]) as img:
        rgba = img.convert("RGBA")
    picture = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    picture = picture.resize((64, 64), Image.LANCZOS)
    seed = sum(map(ord, name))
    found = compare(local_features(picture), local_features(EDITS["colour"](picture, np.random.default_rng(seed))))
    assert found.match, found


@pytest.mark.parametrize("size", [(256, 256), (256, 170), (64, 64)])
def test_the_overlap_of_a_picture_placed_on_itself_is_the_whole_picture(size):
    """OpenCV's intersectConvexConvex answered a 256 x 256 square placed on itself (RANSAC's identity, off by
    1e-15) with a triangle of 14 % of it; the pair was refuted for overlapping too little."""
    from imgsearch.search.duplicates.verifier import _overlap

    w, h = size
    for noise in (0.0, 1e-15, -1e-12, 1e-6):
        matrix = np.array([[1.0, -noise, noise], [noise, 1.0, 2 * noise]])
        region, area = _overlap(matrix, size, size)
        assert area == pytest.approx(w * h, rel=1e-4) and region == (0.0, 0.0, 1.0, 1.0), (noise, region, area)
    half = np.array([[1.0, 0.0, w / 2], [0.0, 1.0, 0.0]])  # shifted by half its width: half of it
    region, area = _overlap(half, size, size)
    assert area == pytest.approx(w * h / 2, rel=1e-4) and region == (0.5, 0.0, 1.0, 1.0)
    turned = np.array([[0.0, -1.0, w / 2 + h / 2], [1.0, 0.0, h / 2 - w / 2]])  # turned a quarter about its centre
    region, area = _overlap(turned, size, size)
    assert area == pytest.approx(min(w, h) ** 2, rel=1e-3)


def test_a_picture_is_one_picture_with_itself(emoji):
    """Whatever its corners and colours: the photographs' tiles and the emoji, each compared with itself."""
    refuted = []
    pictures = [img for _, img in originals()] + list(emoji.values())
    for k, picture in enumerate(pictures):
        features = local_features(picture)
        if not compare(features, features).match:
            refuted.append(k)
    assert not refuted, refuted


@pytest.mark.parametrize("name", ["bird", "tiger2"])
def test_a_half_size_copy_has_no_part_drawn_otherwise(name):
    # a 64-pixel emoji at half size and JPEG 70: its thumbnail is the 32-pixel picture enlarged, whose soft edges
    # differed from the sharp original's over patches of 18-19 pixels (verifier.MAX_DETAIL) until the part drawn
    # otherwise was measured at the blurrier thumbnail's sharpness (scripts/bench_duplicates_scale.py plants
    # such copies: 2 of 300 random emoji were refuted)
    from imgsearch.indexer.inputs.samples import emoji_records

    record = next(r for r in emoji_records() if r["name"] == name)
    with Image.open(record["file"]) as img:
        rgba = img.convert("RGBA")
    picture = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    buffer = io.BytesIO()
    picture.resize((picture.width // 2, picture.height // 2)).save(buffer, format="JPEG", quality=70)
    found = compare(local_features(picture), local_features(_decoded(buffer.getvalue())))
    assert found.match, found
