"""Why a result matches its query: the cosine score split exactly over the cells of the feature map (issue 18).

An embedding is the global average of the backbone's last convolutional
feature map (7 x 7 cells of D = 1280 features for efficientnet-lite0 at 224 px,
9 x 9 for lite2 at 260), L2-normalised.  So with the query's cells ``c_i``
(scaled so that their mean is the unit embedding ``q``) and the result's ``d_j``
(mean ``r``), the score decomposes::

    cos(q, r) = sum_i (c_i . r) / (N |q| |r|) = sum_j (d_j . q) / (N |q| |r|)

Each query cell's share is ``c_i . r / (N |q| |r|)``, each result cell's
``d_j . q / (N |q| |r|)``: signed (a negative share holds the score back), and
on each side they add up to the score.  Whitening is affine (``x -> (x - m) P``)
and so commutes with the mean: the cells are whitened like the embeddings and
the split stays exact in the whitened space.  Head-aware search scores
``(cos(e_q, e_r) + w^2 cos(p_q, p_r)) / (1 + w^2)``: the first part is split over
the cells, the head's part is reported as its own term (``head_share``).

The maps come from the explaining model (``FeatureMapEmbedder``, a second
output of the same network; the plain model that indexing and search run is not
touched).  An explanation runs it once on the query image, which gives the
query's vector and map, and once on the result's image, read from its file: one
forward pass more than a search by image.  A query by id reads its image from
its file too: two passes.  Maps are cached (``MAP_CACHE`` per model), so
explaining more results of one query costs one pass each.  Never is a map
stored for the whole index.

With int8 indexes the dequantised map's mean differs slightly from the int8
model's pooled output (cosine about 0.99995; the pooled output, which is what
was indexed, is the one search scores): the shares of the map as returned then
add up to the score only within a few 1e-3.  That difference, the residual, is
spread evenly over the cells (the same vector added to each cell, so that their
mean is the embedding scored) and reported as its own number
(``query_residual``, ``result_residual``): the shares add up to the score, and
how much of it the map itself did not account for is there to see.  For
float32 the residual is below 1e-6.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from imgsearch.indexer.errors import InvalidInputError, quote
from imgsearch.indexer.folder.manifest import check_image_queries, model_precision, recorded_model_spec, resample
from imgsearch.indexer.folder.whitening import load_for
from imgsearch.indexer.folder.texts import display_text
from imgsearch.indexer.inputs.filesystems import is_uri
from imgsearch.indexer.inputs.images import ImageDecodeError, decode_image
from imgsearch.indexer.vectors import l2_normalize
from imgsearch.search.errors import ChangedFileError, ImageUnavailableError
from imgsearch.search.thumbnails import read_indexed

MAP_CACHE = 64  # feature maps kept per model (7 x 7 x 1280 float32: 250 KB each)
SAME_IMAGE = 0.99  # below this cosine, a file's recomputed embedding is not the one indexed: the file changed


@dataclass(frozen=True)
class Explanation:
    """A pair's score and its split over the query's and the result's cells (rows first, from the top).

    The grids cover the centred square of each image that the model sees (the shorter side, centred).
    """

    score: float  # the pair's score, as search scores it (cosine, or the head-aware blend)
    query_shares: np.ndarray  # (h, w): each query cell's part of the score
    result_shares: np.ndarray  # (h, w): each result cell's part of the score
    result_id: int
    query_id: int | None = None  # None: the query was an image
    head: str | None = None
    head_share: float = 0.0  # the head's class probabilities' part of the score (head-aware search)
    forward_passes: int = 0  # images this call ran through the explaining model (cached maps cost none)
    query_residual: float = 0.0  # the score's part the query's map did not account for, spread over its cells
    result_residual: float = 0.0
    box: tuple | None = None  # the query's region explained, None: the whole query image

    @property
    def query_sum(self) -> float:
        """The query's shares added up, with the head's term: the score."""
        return float(self.query_shares.sum(dtype=np.float64)) + self.head_share

    @property
    def result_sum(self) -> float:
        """The result's shares added up, with the head's term: the score."""
        return float(self.result_shares.sum(dtype=np.float64)) + self.head_share

    def to_dict(self, digits: int = 6) -> dict:
        def grid(shares):
            return [[round(float(x), digits) for x in row] for row in shares]

        return {"score": round(self.score, digits), "query_shares": grid(self.query_shares),
                "result_shares": grid(self.result_shares), "query_sum": round(self.query_sum, digits),
                "result_sum": round(self.result_sum, digits), "grid": list(self.query_shares.shape),
                "head": self.head, "head_share": round(self.head_share, digits), "id": self.result_id,
                "query_id": self.query_id, "forward_passes": self.forward_passes,
                "box": None if self.box is None else list(self.box),
                "residual": {"query": round(self.query_residual, digits), "result": round(self.result_residual, digits)}}


def split_score(query_cells: np.ndarray, query: np.ndarray, result_cells: np.ndarray, result: np.ndarray,
                whiten=None, head=None) -> tuple[float, np.ndarray, np.ndarray, float, float, float]:
    """The pair's score and its exact split:
    -> (score, (N,) query shares, (M,) result shares, head's term, query residual, result residual).

    ``query``, ``result``: (D,) unit embeddings as stored (the vectors search scores); ``*_cells``: (N, D)
    and (M, D) cells whose mean is that embedding, up to the residual (int8's dequantised map), which is
    spread evenly over the cells.  ``whiten``: the index's ``Whitening`` or None.  ``head``: the ``Head``
    of head-aware search, or None.
    """
    def to_search(x):  # affine, so the mean of the cells maps to the mean of their images
        return whiten.apply(x) if whiten is not None else np.asarray(x, np.float32)

    q, r = to_search(query[None])[0].astype(np.float64), to_search(result[None])[0].astype(np.float64)  # (d,)
    q_norm, r_norm = np.linalg.norm(q), np.linalg.norm(r)
    if q_norm == 0 or r_norm == 0:
        raise InvalidInputError("a zero vector has no direction to compare: its score is 0 and cannot be split")
    q_unit, r_unit = q / q_norm, r / r_norm
    cosine = float(q_unit @ r_unit)
    scale, head_share = 1.0, 0.0
    if head is not None:
        w2 = head.search_weight ** 2
        p = l2_normalize(head.predict_proba(np.stack([query, result]))).astype(np.float64)  # (2, C)
        scale, head_share = 1.0 / (1.0 + w2), float(w2 * (p[0] @ p[1]) / (1.0 + w2))
    q_shares = to_search(query_cells).astype(np.float64) @ r_unit * (scale / (len(query_cells) * q_norm))  # (N,)
    r_shares = to_search(result_cells).astype(np.float64) @ q_unit * (scale / (len(result_cells) * r_norm))  # (M,)
    # adding one vector to every cell adds one number to every share (the map is affine in the cells)
    q_residual, r_residual = scale * cosine - q_shares.sum(), scale * cosine - r_shares.sum()
    return (scale * cosine + head_share, q_shares + q_residual / len(q_shares), r_shares + r_residual / len(r_shares),
            head_share, float(q_residual), float(r_residual))


def cells_of(pooled: np.ndarray, feature_map: np.ndarray) -> np.ndarray:
    """(D,) pooled features and their (h, w, D) map -> (h*w, D) cells whose mean is the unit embedding
    (up to int8's residual)."""
    # the embedding is pooled / |pooled| (indexer/vectors.py); the cells are scaled by the same factor
    return feature_map.reshape(-1, feature_map.shape[-1]).astype(np.float32) / np.float32(np.linalg.norm(pooled))


class MapCache:
    """The last ``size`` (pooled, feature map) pairs computed by one model, by the image's identity."""

    def __init__(self, size: int = MAP_CACHE):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Explainer:
    """The explaining model of one backbone, precision and runtime, with its cache of maps."""

    def __init__(self, embedder):
        self.embedder = embedder
        self.cache = MapCache()

    @property
    def forward_passes(self) -> int:
        return self.embedder.forward_passes

    def pooled_and_map(self, key, decode) -> tuple[np.ndarray, np.ndarray]:
        """(pooled (D,), map (h, w, D)) of the image ``decode()`` gives, from the cache when ``key`` is in it."""
        found = self.cache.get(key)
        if found is None:
            found = self.embedder.run(decode())
            self.cache.put(key, found)
        return found


_EXPLAINERS: dict[tuple, Explainer] = {}  # (backbone, weights, cache dir, runtime, precision) -> its explainer
_EXPLAINERS_LOCK = threading.Lock()


def explainer_for(engine) -> Explainer:
    """The explaining model for the index ``engine`` answers from: its backbone and precision, one per process."""
    from imgsearch.indexer.model.backbones import load_backbone
    from imgsearch.indexer.model.embedder import FeatureMapEmbedder

    config, kwargs = engine.config, model_precision(engine.manifest)
    key = (engine.backbone, config.weights, str(config.cache_dir), config.runtime, kwargs["precision"])
    with _EXPLAINERS_LOCK:
        if key not in _EXPLAINERS:
            backbone = load_backbone(engine.backbone, config.weights, config.cache_dir,
                                     recorded_model_spec(engine.manifest))
            _EXPLAINERS[key] = Explainer(FeatureMapEmbedder(backbone, config.runtime, config.cache_dir, **kwargs))
        return _EXPLAINERS[key]


def _is_id(query) -> bool:
    return isinstance(query, (int, np.integer)) and not isinstance(query, (bool, np.bool_))


def indexed_id(engine, path) -> int | None:
    """The id of the indexed image at ``path`` (as indexed: as given, absolute or with links resolved), else None."""
    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes) or is_uri(os.fspath(path)):
        return None
    text = os.fspath(path)
    for candidate in dict.fromkeys((text, os.path.abspath(text), os.path.realpath(text))):
        found = engine.catalog.ids_of_path(candidate)
        if found:
            return found[0]
    return None


def explain_pair(engine, query, result_id, *, head: str | None = None, max_pixels: int | None = None,
                 region=None) -> Explanation:
    """Split the score of ``result_id`` for ``query`` over both images' cells.

    ``query``: an indexed id, or an image (path, bytes, file, PIL image); a path the index holds is that
    indexed image, by its id.  ``result_id``: an indexed id, or the path of an indexed image.  ``head``:
    the head-aware score's split (its term apart).  ``region``: (box, crop) to explain the score of that
    region of the query, as a search with that box scores it: ``crop(image bytes, max_pixels)`` gives the
    region (``search/query/regions.py``, passed in by the engine), an id's image read from its checked file."""
    if not _is_id(result_id):
        found = indexed_id(engine, result_id)
        if found is None:
            held = " (not an image this index holds)" if isinstance(result_id, (str, os.PathLike)) else ""
            raise InvalidInputError(f"the result to explain must be an indexed id, or the path of an indexed "
                                    f"image, got {quote(result_id)}{held}: find it with imgsearch search")
        result_id = found
    if not _is_id(query):
        found = indexed_id(engine, query)
        query = query if found is None else found
    if isinstance(query, (list, tuple, np.ndarray)):
        raise InvalidInputError("a vector has no feature map to explain: query by the image or by its id")
    check_image_queries(engine.manifest)  # vectors made elsewhere: no model, no feature map to explain
    result_id = int(result_id)
    engine.get(result_id)  # UnknownIdError before any decoding
    if _is_id(query):
        engine.get(int(query))
    h = engine.head(head) if head is not None else None
    explainer = explainer_for(engine)
    size = explainer.embedder.backbone.input_size
    how = resample(engine.manifest)
    passes_before = explainer.forward_passes
    if region is not None:  # the region's own vector and map: what a search by the region embeds
        query_id = int(query) if _is_id(query) else None
        limit = engine.config.max_pixels if query_id is not None or max_pixels is None else max_pixels
        data = read_indexed(engine, query_id) if query_id is not None else _image_bytes(query)
        box, crop = region
        key = ("region", hashlib.sha256(data).hexdigest(), tuple(box), limit, how)
        pooled_q, map_q = explainer.pooled_and_map(key, lambda: decode_image(crop(data, limit), size, limit, how).array)
        query_vector = l2_normalize(pooled_q[None])[0]
    elif _is_id(query):
        query_id = int(query)
        query_vector = engine.vector(query_id)
        pooled_q, map_q = _indexed(explainer, engine, query_id, size, how, query_vector)
    else:
        query_id = None
        data = _image_bytes(query)
        limit = engine.config.max_pixels if max_pixels is None else max_pixels
        key = ("image", hashlib.sha256(data).hexdigest(), limit, how)
        pooled_q, map_q = explainer.pooled_and_map(key, lambda: decode_image(data, size, limit, how).array)
        query_vector = l2_normalize(pooled_q[None])[0]  # what search_image embeds (the same model's pooling)
    result_vector = engine.vector(result_id)
    pooled_r, map_r = _indexed(explainer, engine, result_id, size, how, result_vector)
    info = engine.manifest.get("whitening")
    whiten = load_for(engine.store.root, info) if info else None
    score, q_shares, r_shares, head_share, q_residual, r_residual = split_score(
        cells_of(pooled_q, map_q), query_vector, cells_of(pooled_r, map_r), result_vector, whiten, h)
    return Explanation(score, q_shares.reshape(map_q.shape[:2]), r_shares.reshape(map_r.shape[:2]), result_id,
                       query_id, head, head_share, explainer.forward_passes - passes_before, q_residual, r_residual,
                       None if region is None else tuple(region[0]))


def _image_bytes(image) -> bytes:
    """A query image as bytes, to key the cache by its content (decode_image takes bytes too)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        try:
            with open(image, "rb") as f:
                return f.read()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read {image}: {exc.strerror or exc}") from None
    if hasattr(image, "read"):
        return image.read()
    import io

    buf = io.BytesIO()  # a PIL image: its pixels, losslessly
    image.save(buf, "PNG")
    return buf.getvalue()


def _indexed(explainer: Explainer, engine, row_id: int, size: int, how: str, stored: np.ndarray):
    """(pooled, map) of indexed image ``row_id``, recomputed from its file (or cached); ChangedFileError when
    the file no longer holds the bytes indexed (search/thumbnails.py) or, however that came about, no longer
    gives the embedding that was stored for it."""
    name = f"image {row_id}"
    data = read_indexed(engine, row_id)  # checked against the stored sha256: the bytes indexed, or an error
    key = ("image", hashlib.sha256(data).hexdigest(), engine.config.max_pixels, how)
    try:
        pooled, feature_map = explainer.pooled_and_map(
            key, lambda: decode_image(data, size, engine.config.max_pixels, how).array)
    except ImageDecodeError as exc:
        raise ImageUnavailableError(f"{name} is in the index but its file is not readable any more: {exc}") from exc
    cosine = float(l2_normalize(pooled[None])[0] @ stored)
    if cosine < SAME_IMAGE:
        raise ChangedFileError(f"{name}'s file {display_text(engine.get(row_id).path)} has changed since it was "
                               f"indexed (its embedding now has cosine {cosine:.3f} with the stored one): "
                               "re-index the folder to explain it")
    return pooled, feature_map
