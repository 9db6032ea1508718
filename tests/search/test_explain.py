"""Explaining a match by the feature map's cells (issue 18): the explaining model, the exact split, the engine.

The score of a pair is split over the query's and the result's 7 x 7 cells (efficientnet-lite0 at
224 px); on each side the shares add up to the score that search reports for the pair.
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
from PIL import Image

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.inputs.calibration import CALIBRATION
from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.model.embedder import Embedder, FeatureMapEmbedder
from imgsearch.search.engine import SearchEngine, UnknownIdError
from imgsearch.search.explain.explainer import ChangedFileError, explainer_for

# the explaining model is a conversion of its own per precision (int8 calibrated): tens of seconds cold
pytestmark = pytest.mark.slow

SUM_TOLERANCE = 1e-3  # the bound on |sum of shares - score|

# the planted object: the cat's face from scikit-image's chelsea, pasted at PASTE x PASTE px (4 x 4 of the 7 x 7
# cells) into square backgrounds at cell-aligned places, so a cell is wholly inside the paste or wholly out
PASTE, SIZE, CELL = 128, 224, 32
BACKGROUNDS = ("astronaut", "coffee", "rocket", "camera", "brick", "grass")
PLACES = ((0, 0), (96, 96), (0, 96), (96, 0), (32, 32))


def _photos(photos_dir):
    return sorted(p for p in photos_dir.rglob("*.jpg"))


@pytest.fixture(scope="module")
def explain_indexes(tmp_path_factory, photos_dir):
    """The bundled photos indexed in float32 and in int8, each also as a whitened copy."""
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.indexer.run.whiten import set_whitening

    root = tmp_path_factory.mktemp("explain")
    made = {}
    for precision in ("float32", "int8"):
        plain = root / precision
        index_images([photos_dir], plain, IndexConfig(progress=False, precision=precision))
        whitened = root / f"{precision}-whitened"
        shutil.copytree(plain, whitened)
        set_whitening(whitened, dim=6)
        made[precision], made[f"{precision}-whitened"] = plain, whitened
    return made


def _backgrounds() -> dict[str, Image.Image]:
    import skimage.data

    out = {}
    for name in BACKGROUNDS:
        a = getattr(skimage.data, name)()
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]
        out[name] = Image.fromarray(a).resize((SIZE, SIZE), Image.BICUBIC)
    return out


def _cat() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.chelsea()).crop((120, 20, 330, 230)).resize((PASTE, PASTE), Image.BICUBIC)


@pytest.fixture(scope="module")
def planted_index(tmp_path_factory, lite0):
    """Each background with the cat pasted at each place (PNG: the paste stays exact), indexed in float32."""
    from imgsearch.indexer.run.pipeline import index_images

    folder = tmp_path_factory.mktemp("planted")
    cat = _cat()
    for name, bg in _backgrounds().items():
        for x, y in PLACES:
            im = bg.copy()
            im.paste(cat, (x, y))
            im.save(folder / f"{name}-{x}-{y}.png")
    index_dir = folder.parent / "planted-idx"
    index_images([folder], index_dir, IndexConfig(progress=False, precision="float32"))
    return index_dir


def test_the_explaining_model_pools_as_the_plain_model_does(lite0, photos_dir):
    """Its pooled output is the plain model's (float32 within 1e-5, int8 too); its map averages to it."""
    from imgsearch.indexer.config import default_cache_dir
    from imgsearch.indexer.model.runtime import _tflite_cache_path

    images = np.stack([decode_image(f, lite0.input_size).array for f in _photos(photos_dir)])  # (n, 224, 224, 3)
    for precision, calibration in (("float32", None), ("int8", CALIBRATION)):
        plain = Embedder(lite0, precision=precision, calibration=calibration).embed(images)  # (n, D) unit
        explaining = FeatureMapEmbedder(lite0, precision=precision, calibration=calibration)
        runs = [explaining.run(image) for image in images]
        pooled = np.stack([p for p, _ in runs])  # (n, D)
        maps = np.stack([m for _, m in runs])  # (n, 7, 7, D)
        assert maps.shape[1:] == (7, 7, lite0.dim)
        unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        np.testing.assert_allclose(unit, plain, atol=1e-5)
        means = maps.mean(axis=(1, 2))  # (n, D)
        cosine = (means * pooled).sum(1) / np.linalg.norm(means, axis=1) / np.linalg.norm(pooled, axis=1)
        print(f"{precision}: pooled output vs the plain model's: max |diff| {np.abs(unit - plain).max():.2e}; "
              f"map mean vs pooled output: cosine min {cosine.min():.6f}")
        assert cosine.min() > (0.99999 if precision == "float32" else 0.999)
        assert explaining.forward_passes == len(images)
        # its own flatbuffer: the plain model's cached file (and so every index's embeddings) is untouched
        assert (_tflite_cache_path(lite0, default_cache_dir(), precision, calibration, outputs="map")
                != _tflite_cache_path(lite0, default_cache_dir(), precision, calibration))


@pytest.mark.parametrize("name", ["float32", "float32-whitened", "int8", "int8-whitened"])
def test_shares_add_up_to_the_score_for_every_pair(explain_indexes, photos_dir, name):
    engine = SearchEngine.open(explain_indexes[name])
    ids = [int(i) for i in engine.ids]
    worst_score = worst_sum = worst_residual = 0.0
    for query in ids:
        hits = engine.search_id(query, k=len(ids) - 1)
        assert len(hits) == len(ids) - 1
        for hit in hits:
            why = engine.explain(query, hit.id)
            assert why.query_shares.shape == why.result_shares.shape == (7, 7)
            worst_score = max(worst_score, abs(why.score - hit.score))
            worst_sum = max(worst_sum, abs(why.query_sum - hit.score), abs(why.result_sum - hit.score))
            worst_residual = max(worst_residual, abs(why.query_residual), abs(why.result_residual))
    # a query by image: its vector and map come from one pass of the explaining model
    image = _photos(photos_dir)[1]
    for hit in engine.search_image(image, k=3):
        why = engine.explain(str(image), hit.id)
        worst_score = max(worst_score, abs(why.score - hit.score))
        worst_sum = max(worst_sum, abs(why.query_sum - hit.score), abs(why.result_sum - hit.score))
    print(f"{name}: {len(ids) * (len(ids) - 1)} pairs; |score - search's| <= {worst_score:.2e}, "
          f"|sum of shares - search's score| <= {worst_sum:.2e}; the maps' residual (spread over the cells) "
          f"<= {worst_residual:.2e}")
    assert worst_score < 1e-5
    assert worst_sum < SUM_TOLERANCE
    # float32: the map's mean is the pooled output; int8: its dequantised mean misses a little of the score
    assert worst_residual < (1e-5 if name.startswith("float32") else 0.02)


def test_whitened_shares_are_signed(explain_indexes):
    """Whitening subtracts the mean: cells that look like every image hold the score back (negative shares).
    Without it every share of a ReLU network's features is >= 0 (non-negative cells, non-negative vectors)."""
    ids = [int(i) for i in SearchEngine.open(explain_indexes["float32"]).ids]
    plain = SearchEngine.open(explain_indexes["float32"]).explain(ids[0], ids[1])
    whitened = SearchEngine.open(explain_indexes["float32-whitened"]).explain(ids[0], ids[1])
    assert (plain.query_shares >= 0).all() and (plain.result_shares >= 0).all()
    assert (whitened.query_shares < 0).any() and (whitened.query_shares > 0).any()


def _inside(place) -> np.ndarray:
    """(7, 7) bool: the cells the paste at ``place`` covers (it is cell-aligned)."""
    x, y = place
    mask = np.zeros((SIZE // CELL, SIZE // CELL), bool)
    mask[y // CELL:(y + PASTE) // CELL, x // CELL:(x + PASTE) // CELL] = True
    return mask


def test_a_planted_object_holds_most_of_the_positive_share(planted_index):
    """The same cat pasted into two different photos: most of each side's positive share is on the cat."""
    engine = SearchEngine.open(planted_index)
    by_name = {engine.get(int(i)).path.rsplit("/", 1)[-1][:-4]: int(i) for i in engine.ids}
    fractions = []
    for n, (a, b) in enumerate(itertools.permutations(BACKGROUNDS, 2)):
        qa, qb = PLACES[n % len(PLACES)], PLACES[(n + 2) % len(PLACES)]  # every place, on both sides
        why = engine.explain(by_name[f"{a}-{qa[0]}-{qa[1]}"], by_name[f"{b}-{qb[0]}-{qb[1]}"])
        for shares, place in ((why.query_shares, qa), (why.result_shares, qb)):
            positive = np.clip(shares, 0, None)
            fractions.append(positive[_inside(place)].sum() / positive.sum())
    fractions = np.array(fractions)
    area = PASTE ** 2 / SIZE ** 2
    print(f"planted cat ({area:.0%} of the image) over {len(fractions)} sides: positive share inside it "
          f"mean {fractions.mean():.3f}, median {np.median(fractions):.3f}, min {fractions.min():.3f}")
    assert fractions.mean() >= 0.6


def test_head_aware_scores_split_with_the_heads_term_apart(cnn_headed_index):
    engine = SearchEngine.open(cnn_headed_index)
    query = int(engine.ids[0])
    for hit in engine.search_id(query, k=5, head="cat"):
        why = engine.explain(query, hit.id, head="cat")
        assert why.head == "cat" and 0 < why.head_share < why.score
        assert abs(why.score - hit.score) < 1e-4
        assert abs(why.query_sum - hit.score) < SUM_TOLERANCE and abs(why.result_sum - hit.score) < SUM_TOLERANCE


def test_forward_passes_one_for_the_result_and_maps_cached(explain_indexes, photos_dir):
    engine = SearchEngine.open(explain_indexes["float32"])
    explainer_for(engine).cache.clear()
    ids = [int(i) for i in engine.ids]
    image = _photos(photos_dir)[2].read_bytes()
    # by image: the query's vector and map in one pass (search would have run one too), one for the result
    assert engine.explain(image, ids[0]).forward_passes == 2
    assert engine.explain(image, ids[1]).forward_passes == 1  # the query's map was cached
    assert engine.explain(image, ids[1]).forward_passes == 0
    # by id: the query's image is read from its file, a pass of its own the first time
    assert engine.explain(ids[3], ids[4]).forward_passes == 2
    assert engine.explain(ids[3], ids[5]).forward_passes == 1


def test_bad_explain_requests(explain_indexes):
    engine = SearchEngine.open(explain_indexes["float32"])
    ids = [int(i) for i in engine.ids]
    with pytest.raises(UnknownIdError):
        engine.explain(ids[0], 10_000)
    with pytest.raises(UnknownIdError):
        engine.explain(10_000, ids[0])
    with pytest.raises(InvalidInputError, match="must be an indexed id"):
        engine.explain(ids[0], "3")
    with pytest.raises(InvalidInputError, match="a vector has no feature map"):
        engine.explain(engine.vector(ids[0]), ids[1])


def test_a_file_changed_since_it_was_indexed_is_not_explained(tmp_path, photos_dir):
    from imgsearch.indexer.run.pipeline import index_images

    folder = tmp_path / "images"
    folder.mkdir()
    first, second = _photos(photos_dir)[:2]
    shutil.copy(first, folder / "a.jpg")
    shutil.copy(second, folder / "b.jpg")
    index_images([folder], tmp_path / "idx", IndexConfig(progress=False, precision="float32"))
    engine = SearchEngine.open(tmp_path / "idx")
    a, b = (engine.get(int(i)) for i in engine.ids)
    shutil.copy(second if a.path.endswith("a.jpg") else first, a.path)  # a's file now holds another picture
    with pytest.raises(ChangedFileError, match="has changed since it was indexed"):
        engine.explain(b.id, a.id)
