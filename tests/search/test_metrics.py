"""The retrieval metric alone, on a layout whose answer is known (quality on real sets: tests/quality/)."""

import numpy as np

from imgsearch.search.evaluate.metrics import leave_one_out_precision


def test_precision_metric_on_known_layout():
    # two tight clusters, far apart: every neighbour shares the label
    rng = np.random.default_rng(0)
    a = rng.normal([5, 0, 0], 0.1, (12, 3))
    b = rng.normal([0, 5, 0], 0.1, (12, 3))
    v = np.vstack([a, b]).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    labels = ["a"] * 12 + ["b"] * 12
    assert leave_one_out_precision(v, labels, k=10).precision == 1.0
    # shuffled labels: about chance (11 of 23 others share a label)
    shuffled = rng.permutation(labels)
    assert leave_one_out_precision(v, shuffled, k=10).precision < 0.75
