"""int8's quality on the near-duplicate benchmark set (issue 15): recall@1 against float32's, lite0 and lite2."""

from __future__ import annotations

import numpy as np

from imgsearch.indexer.inputs.calibration import CALIBRATION
from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.model.embedder import Embedder
from imgsearch.search.evaluate.metrics import leave_one_out_precision


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
