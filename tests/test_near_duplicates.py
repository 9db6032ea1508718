"""The near-duplicate benchmark set (indexer/inputs/near_duplicates.py) and int8's quality on it (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from imgsearch.indexer.inputs.calibration import CALIBRATION
from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.inputs.near_duplicates import EDITS, near_duplicate_set, originals
from imgsearch.indexer.inputs.samples import export_sample
from imgsearch.indexer.model.embedder import Embedder
from imgsearch.search.evaluate.metrics import leave_one_out_precision


@pytest.fixture(scope="session")
def near_dups():
    return near_duplicate_set()


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


def test_int8_finds_the_original_as_often_as_float32(lite0, embedder, near_dups):
    """recall@1 (the nearest other image is of the same original); issue 15's tolerance is 0.01."""
    pixels = np.stack([decode_image(i.source, lite0.input_size).array for i in near_dups])  # (684, 224, 224, 3)
    labels = np.array([i.group for i in near_dups])
    f32 = leave_one_out_precision(embedder.embed(pixels), labels, k=1).precision
    i8 = leave_one_out_precision(Embedder(lite0, precision="int8", calibration=CALIBRATION).embed(pixels),
                                 labels, k=1).precision
    print(f"near-duplicate recall@1, lite0: float32 {f32:.4f}, int8 {i8:.4f}")
    assert f32 >= 0.70 and i8 >= 0.70  # measured 0.744 and 0.740 (bilinear)
    assert i8 >= f32 - 0.01


@pytest.mark.slow
def test_near_duplicate_recall_floor_lite2(near_dups):
    from imgsearch.indexer.model.backbones import load_backbone

    lite2 = load_backbone("efficientnet-lite2")
    pixels = np.stack([decode_image(i.source, lite2.input_size).array for i in near_dups])  # (684, 260, 260, 3)
    labels = np.array([i.group for i in near_dups])
    f32 = leave_one_out_precision(Embedder(lite2).embed(pixels), labels, k=1).precision
    i8 = leave_one_out_precision(Embedder(lite2, precision="int8", calibration=CALIBRATION).embed(pixels),
                                 labels, k=1).precision
    print(f"near-duplicate recall@1, lite2: float32 {f32:.4f}, int8 {i8:.4f}")
    assert f32 >= 0.71 and i8 >= 0.71  # measured 0.738 and 0.747 (bilinear; bicubic 0.747 and 0.738)
    assert i8 >= f32 - 0.01
