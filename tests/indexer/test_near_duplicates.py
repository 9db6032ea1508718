"""The near-duplicate benchmark set (indexer/inputs/near_duplicates.py); int8's quality on it is measured in
tests/quality/test_near_duplicates.py."""

from __future__ import annotations

import numpy as np
from PIL import Image

from imgsearch.indexer.inputs.near_duplicates import EDITS, near_duplicate_set, originals
from imgsearch.indexer.inputs.samples import export_sample


def test_the_set_is_seeded_and_holds_every_original_with_every_edit(near_dups):
    again = near_duplicate_set()
    assert [i.name for i in again] == [i.name for i in near_dups]
    assert all(np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(again, near_dups))
    groups = {i.group for i in near_dups}
    assert len(groups) == len(originals()) >= 50
    for g in groups:
        assert sorted(i.edit for i in near_dups if i.group == g) == sorted(["original", *EDITS])
    assert len(near_dups) == len(groups) * (1 + len(EDITS))
    other_seed = near_duplicate_set(seed=1)
    assert any(not np.array_equal(np.asarray(a.image), np.asarray(b.image)) for a, b in zip(other_seed, near_dups))


def test_tiles_of_one_photograph_share_no_pixels():
    tiles = originals()
    sizes = {}
    for name, tile in tiles:
        photo = name.rsplit("-", 2)[0]
        sizes[photo] = sizes.get(photo, 0) + tile.width * tile.height
    import skimage.data

    for photo, area in sizes.items():
        h, w = getattr(skimage.data, photo)().shape[:2]
        assert area == w * h, photo  # the tiles partition the photograph: no overlap, nothing left out


def test_lookalikes_are_distinct_pictures_each_in_a_group_of_its_own(near_dups):
    import hashlib

    from imgsearch.indexer.inputs.samples import lookalikes

    alike = lookalikes()
    assert len(alike) >= 200  # issue 16: at least 200 look-alikes
    assert len({hashlib.sha256(i.image.tobytes()).digest() for i in alike}) == len(alike)
    assert len({i.group for i in alike}) == len(alike)
    assert not {i.group for i in alike} & {i.group for i in near_dups}
    assert {i.edit for i in alike} >= {"lookalike-country-flag", "lookalike-digit-1"}


def test_export_labels_each_file_with_its_group(tmp_path, near_dups):
    n = export_sample("near-duplicates", tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert n == len(files) == len(near_dups)
    assert len({p.parent.name for p in files}) == len({i.group for i in near_dups})
    jpeg = next(p for p in files if p.suffix == ".jpg")
    assert Image.open(jpeg).format == "JPEG"
    item = next(i for i in near_dups if i.encoded is not None)
    assert item.encoded[:2] == b"\xff\xd8"  # the JPEG edit is kept as its bytes, not re-encoded
