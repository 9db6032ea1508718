"""Quality on real labelled sets nobody here made (scripts/eval_retrieval.py and
scripts/eval_heads.py print the README tables).

Floors sit a little under the figures measured here, so a broken model,
preprocessing, search or head fails them while run-to-run noise does not.
Each full set is embedded once per backbone per session and shared.
"""

import pytest

from imgsearch.indexer.run.heads import labelled_embeddings, train_head
from imgsearch.indexer.run.samples import sample_index
from imgsearch.search.evaluate.metrics import head_aware_precision, index_precision


@pytest.fixture(scope="session")
def sample_indexes(tmp_path_factory):
    """(dataset, backbone, limit) -> index folder, built on first use."""
    work = tmp_path_factory.mktemp("samples")
    cache = {}

    def get(dataset, backbone, limit=None, precision=None):
        key = (dataset, backbone, limit, precision)
        if key not in cache:
            cache[key] = sample_index(dataset, work, backbone, limit=limit, precision=precision)
        return cache[key]

    return get


@pytest.mark.parametrize("dataset, floor", [("mnist", 0.70), ("emoji", 0.46)])  # measured 0.732, 0.512
def test_precision_floor_on_subsets_lite0(sample_indexes, dataset, floor):
    report = index_precision(sample_indexes(dataset, "efficientnet-lite0", 500), k=10)
    assert report.images == 500
    assert report.precision >= floor, report.to_dict()


FULL = [("mnist", "efficientnet-lite0"), ("mnist", "efficientnet-lite2"),
        ("emoji", "efficientnet-lite0"), ("emoji", "efficientnet-lite2")]


@pytest.mark.slow
@pytest.mark.parametrize("dataset, backbone, floor", [
    ("mnist", "efficientnet-lite0", 0.80),  # int8 + bilinear (scripts/eval_precision.py: 0.862; float32 bicubic 0.843)
    ("mnist", "efficientnet-lite2", 0.77),  # 0.831 (float32 bicubic 0.809)
    ("emoji", "efficientnet-lite0", 0.62),  # 0.674 (float32 bicubic 0.670)
    ("emoji", "efficientnet-lite2", 0.62),  # 0.677 (float32 bicubic 0.673)
])
def test_precision_floor_full_sets(sample_indexes, dataset, backbone, floor):
    """The default index: the precision chosen for this CPU (issue 32: int8 where it is faster, float32 on an
    AVX2-only CPU); the floors hold for both (scripts/eval_precision.py's figures in the comments)."""
    index_dir = sample_indexes(dataset, backbone)
    report = index_precision(index_dir, k=10)
    assert report.images == (5000 if dataset == "mnist" else 1897)
    assert report.precision >= floor, report.to_dict()
    from imgsearch.indexer.folder.store import EmbeddingStore
    from imgsearch.indexer.model.precision_choice import cpu_info, without_measuring

    chosen = EmbeddingStore(index_dir).read_manifest()["backbone"]
    assert chosen["precision_reason"].startswith(chosen["precision"] + ":"), chosen  # chosen here, and why
    if without_measuring(cpu_info()[1]) is not None:  # a CPU whose flags answer (AVX2 here): float32
        assert chosen["precision"] == "float32", chosen


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "emoji"])
def test_int8_is_within_a_hundredth_of_float32_on_full_sets(sample_indexes, dataset):
    """Issue 15's tolerance, on the same files: int8 P@10 >= float32 P@10 - 0.01 (measured -0.0001, +0.0003)."""
    int8 = index_precision(sample_indexes(dataset, "efficientnet-lite0"), k=10).precision
    float32 = index_precision(sample_indexes(dataset, "efficientnet-lite0", precision="float32"), k=10).precision
    print(f"{dataset} lite0 P@10: float32 {float32:.4f}, int8 {int8:.4f}")
    assert float32 >= (0.80 if dataset == "mnist" else 0.62)
    assert int8 >= float32 - 0.01


@pytest.mark.slow
@pytest.mark.parametrize("dataset, backbone, floor", [
    ("mnist", "efficientnet-lite0", 0.92),  # measured 0.957
    ("mnist", "efficientnet-lite2", 0.92),  # measured 0.950
    ("emoji", "efficientnet-lite0", 0.72),  # measured 0.763
    ("emoji", "efficientnet-lite2", 0.72),  # measured 0.768
])
def test_head_beats_knn_on_held_out_split(sample_indexes, dataset, backbone, floor):
    head = train_head(sample_indexes(dataset, backbone), "quality")
    m = head.metrics
    assert m["val_images"] >= 0.19 * (5000 if dataset == "mnist" else 1897)
    assert m["validation"]["accuracy"] >= floor, m["validation"]["accuracy"]
    assert m["validation"]["accuracy"] > m["knn_validation"]["accuracy"], (m["validation"], m["knn_validation"])


@pytest.mark.slow
@pytest.mark.parametrize("dataset, backbone", [("mnist", "efficientnet-lite0"), ("emoji", "efficientnet-lite0")])
def test_head_aware_search_is_not_worse(sample_indexes, dataset, backbone):
    _, vectors, labels, _ = labelled_embeddings(sample_indexes(dataset, backbone))
    out = head_aware_precision(vectors, labels, weights=(1.0,))
    assert out["scored_images"] >= len(labels) // 2 - 1
    assert out["head"][1.0] >= out["plain"], out  # measured +0.06 (emoji), +0.12 (MNIST)
