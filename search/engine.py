"""Answering queries against one index folder."""

from __future__ import annotations

import logging
import os
import threading

import numpy as np

from imgsearch.indexer.config import IndexConfig, check_max_pixels  # noqa: F401 - the web app checks its limit with it
from imgsearch.indexer.errors import InvalidInputError, quote
from imgsearch.indexer.folder.manifest import (backbone_name, check_compatible, check_image_queries, is_external,
                                               model_precision, precision, recorded_model_spec, resample)
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.folder.texts import display_text  # noqa: F401 - web shows paths with display_text
from imgsearch.indexer.folder.whitening import search_space
from imgsearch.indexer.inputs.images import ImageSource, decode_image
from imgsearch.indexer.vectors import search_index
from imgsearch.search.catalog import Catalog
from imgsearch.search.duplicates.cache import DuplicateCache
from imgsearch.search.errors import InvalidBoxError, InvalidVectorError, UnknownIdError  # noqa: F401 - callers import them here
from imgsearch.search.explain.explainer import explain_pair
from imgsearch.search.heads import HeadCatalog
from imgsearch.search.hits import Hit
from imgsearch.search.opening import newest_if_gone as _newest_if_gone, open_newest, open_version, version_health, version_info
from imgsearch.search.query.examples import search_examples
from imgsearch.search.query.filter_index import FilteredSearch
from imgsearch.search.query.filters import as_filter
from imgsearch.search.query.regions import crop_region, parse_box
from imgsearch.search.query.remote import fetch_image
from imgsearch.search.query.spec import Query, as_query
from imgsearch.search.query.text import search_text
from imgsearch.search.query.vectors import check_query_vector
from imgsearch.search.query.window import MAX_K, id_set, ranked  # noqa: F401 - callers read MAX_K here
from imgsearch.search.reloading import ReloadingEngine
from imgsearch.search.thumbnails import load_indexed_image, thumbnail_jpeg

log = logging.getLogger(__name__)


class SearchEngine:
    """Query-by-image, by vector and by id over a published index folder.

    Use ``SearchEngine.open(DIR)``.  The CNN is loaded on the first
    query-by-image, so serving by id or vector needs no TensorFlow.

    An engine answers from the version of the folder it opened, however often
    the indexer publishes: ``reload()`` gives an engine over the version
    published now, and ``SearchEngine.open(DIR, auto_reload=True)`` one that
    follows new versions by itself (``search/reloading.py``).
    """

    def __init__(self, store: EmbeddingStore, manifest: dict, index, metadata: Catalog, config: IndexConfig,
                 device: str = "cpu"):
        self.store = store
        self.manifest = manifest
        self.index = index
        self.config = config
        self.catalog = metadata  # id -> row, labels, paths read from the shards (search/catalog.py)
        self._ids = metadata.ids  # (n,) int64
        self._embedder = None
        self.heads = HeadCatalog(store, manifest, searchable=index is not None)
        self._lock = threading.Lock()
        self.device = device  # where FAISS searches: "cpu" or "gpu"
        self._signature = None  # of the manifest file this engine was opened from
        self.opened_files: dict = {}  # relative path -> (inode, size, mtime_ns) at open (``health``)
        self._reopen = None  # set by a ReloadingEngine: engine -> the newest version, when this one's files are gone
        self._successor = None  # the newer version answering for this one, once its files were found gone
        self.duplicate_reports = DuplicateCache()  # this version's duplicate reports (``cached`` peeks)
        self.filtered = FilteredSearch(store, manifest["shards"], self._ids)  # metadata read on first use

    @classmethod
    def open(cls, index_dir: str | os.PathLike, *, backbone: str | None = None,
             config: IndexConfig | None = None, verify: bool = False, auto_reload: bool = False,
             reload_interval: float = 1.0):
        """Open a published index; ``backbone``, if given, must be the one it was built with.

        Checks that the published files are all there with the sizes the manifest recorded, and that the shards
        and the FAISS index hold as many vectors of the dimension it says; ``verify=True`` also reads every file
        and checks its sha256 (``imgsearch verify``).  A damaged index raises ``IndexFormatError``.
        ``auto_reload=True`` returns a ``ReloadingEngine`` that picks up newly published versions (checking at
        most every ``reload_interval`` seconds).
        """
        if auto_reload:
            return ReloadingEngine(cls.open(index_dir, backbone=backbone, config=config, verify=verify),
                                   interval=reload_interval)
        store = EmbeddingStore(index_dir)
        return open_newest(store, lambda: cls._open_version(store, backbone, config), verify)

    @classmethod
    def _open_version(cls, store: EmbeddingStore, backbone: str | None,
                      config: IndexConfig | None) -> "SearchEngine":
        """Open the version published now (one attempt)."""
        v = open_version(store, backbone, config)
        engine = cls(store, v.manifest, v.index, v.metadata, v.config, device=v.device)
        engine._signature, engine.opened_files = v.signature, v.files
        return engine

    # ------------------------------------------------------------ versions
    @property
    def generation(self) -> int:
        """The version of the index folder this engine answers from (the manifest's generation)."""
        return int(self.manifest.get("generation", 0))

    def changed(self) -> bool:
        """Whether a new version was published since this engine was opened (one stat of the manifest)."""
        return self._signature is None or self.store.manifest_signature() != self._signature

    def reload(self) -> "SearchEngine":
        """An engine over the version published now, sharing this one's loaded model (this engine if nothing was
        published since it was opened).  This engine is not changed: requests it answers finish on its version."""
        if not self.changed():
            return self
        new = type(self).open(self.store.root, config=self.config)
        if new.manifest == self.manifest:
            self._signature = new._signature
            return self
        if new.backbone == self.backbone and precision(new.manifest) == precision(self.manifest):
            with self._lock:
                new._embedder = self._embedder
        log.info("%s: version %d -> %d (%d images)", self.store.root, self.generation, new.generation, len(new))
        return new

    def current(self) -> "SearchEngine":
        """The engine to answer one request with: itself (a ``ReloadingEngine`` returns its newest)."""
        return self

    def _newer_version(self) -> "SearchEngine | None":
        """The newest version if this one was replaced since it was opened and a ReloadingEngine opens it."""
        if self._reopen is None or not self.changed():
            return None  # nothing newer: a missing or damaged file is damage, not a publish
        newer = self._reopen(self)
        if newer is self:
            return None
        log.info("%s: version %d lost its files to newer versions; answering from version %d",
                 self.store.root, self.generation, newer.generation)
        self._successor = newer
        return newer

    # ------------------------------------------------------------ info
    @property
    def backbone(self) -> str:
        return backbone_name(self.manifest)

    @property
    def dim(self) -> int:
        return self.manifest["dim"]

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> np.ndarray:
        """All indexed ids, (n,) int64."""
        return self._ids

    def info(self) -> dict:
        """What ``imgsearch info`` and ``GET /api/info`` show of this version."""
        return version_info(self)

    def health(self) -> dict:
        """``{"status": "ok"}`` or ``"degraded"`` with the ``reason``: damaged shards met, files changed on disk."""
        return version_health(self)

    # ------------------------------------------------------------ queries
    def embed_images(self, images: list[ImageSource], *, max_pixels: int | None = None,
                     box=None) -> np.ndarray:
        """Embed query images with the index's backbone: -> (q, D) unit vectors.  Raises ImageDecodeError for a bad
        image, ImageTooLargeError for one over ``max_pixels`` (default: the config's), before any is embedded.
        ``box``: embed only that region of each, ``[x0, y0, x1, y1]`` fractions."""
        embedder = self._get_embedder()
        size = embedder.backbone.input_size
        limit = self.config.max_pixels if max_pixels is None else max_pixels
        if box is not None:
            images = [crop_region(img, box, limit) for img in images]
        batch = np.stack([decode_image(img, size, limit, resample(self.manifest)).array for img in images])  # (q,S,S,3)
        return embedder.embed(batch)

    # Every query method takes its options once, as keywords (k, offset, min_score, head, box, filter, ...)
    # or as ``query=Query(...)`` built where the request entered (search/query/spec.py), and passes the
    # checked Query on: nothing below checks an option again.

    @_newest_if_gone
    def search_image(self, image: ImageSource, k: int | None = None, *, head: str | None = None,
                     max_pixels: int | None = None, min_score: float | None = None, offset: int | None = None,
                     box=None, filter=None, query: Query | None = None) -> list[Hit]:
        """Nearest images to an image given as a path, bytes, file object or PIL image; ``max_pixels``:
        refuse (ImageTooLargeError) one declaring more pixels (default: the config's); ``box``: search by
        that region of it, ``[x0, y0, x1, y1]`` fractions of its width and height."""
        q = as_query(query, k, head=head, max_pixels=max_pixels, min_score=min_score, offset=offset, box=box,
                     filter=filter)
        if q.head is not None:
            self._head(q.head)  # a bad head name fails before anything is embedded
        vector = self.embed_images([image], max_pixels=q.max_pixels, box=q.box)[0]
        return self._search(vector, q)

    @_newest_if_gone
    def search_url(self, url: str, k: int | None = None, *, head: str | None = None, max_pixels: int | None = None,
                   box=None, policy=None, min_score: float | None = None, offset: int | None = None, filter=None,
                   query: Query | None = None) -> list[Hit]:
        """Nearest images to the image at an http(s) ``url``, fetched through the SSRF guard
        (search/query/remote.py; ``policy``: its limits and allowed networks, default ``UrlPolicy()``)."""
        q = as_query(query, k, head=head, max_pixels=max_pixels, min_score=min_score, offset=offset, box=box,
                     filter=filter)
        if q.head is not None:
            self._head(q.head)  # a bad head is refused before anything is fetched
        return self.search_image(fetch_image(url, policy), query=q)

    @_newest_if_gone
    def search_examples(self, positive, negative=(), k: int | None = None, *, strategy=None, head=None,
                        min_score=None, offset: int | None = None, max_pixels: int | None = None, filter=None,
                        query: Query | None = None) -> list[Hit]:
        """Nearest images to several examples, ``positive`` and ``negative``: lists of ids, vectors, images
        or weighted ``Example``s; ``strategy`` "rocchio" or "best" (``search/query/examples.py``)."""
        q = as_query(query, k, strategy=strategy, head=head, min_score=min_score, offset=offset,
                     max_pixels=max_pixels, filter=filter)
        return search_examples(self, positive, negative, q)

    @_newest_if_gone
    def search_text(self, text: str, k: int | None = None, *, head=None, min_score=None, offset: int | None = None,
                    filter=None, query: Query | None = None) -> list[Hit]:
        """Nearest images to the words ``text``, by the index's text tower (image-text presets: query/text.py)."""
        return search_text(self, text, as_query(query, k, head=head, min_score=min_score, offset=offset, filter=filter))

    @_newest_if_gone
    def search_vector(self, vector, k: int | None = None, *, exclude=None, head: str | None = None,
                      min_score: float | None = None, offset: int | None = None, filter=None,
                      query: Query | None = None) -> list[Hit]:
        """Nearest images to a (D,) embedding-space vector but the id(s) ``exclude``: ``k`` from rank ``offset``
        scoring at least ``min_score`` (``k`` None: all such, to MAX_K; ``search/query/window.py``).  With
        ``head``, similarity blends in that head's class probabilities (head-aware search); else plain cosines.
        ``filter``: only images whose metadata it selects (``search/query/filters.py``), searched inside FAISS."""
        q = as_query(query, k, head=head, min_score=min_score, offset=offset, filter=filter)
        if q.box is not None:
            raise InvalidBoxError("box takes a region of one image: search an image, a url or an id with it, "
                                  "not a vector")
        return self._search(vector, q, exclude)

    def _search(self, vector, q: Query, exclude=None) -> list[Hit]:
        """The window of ``q`` over the ranking of ``vector``'s neighbours, ``exclude`` left out."""
        win, head, filter = q.window(), q.head, q.filter
        v = self.check_vector(vector)[None]  # (1, D)
        if self.index is None or len(self) == 0:
            return []
        query = search_space(v, self.store.root, self.manifest)  # (1, d)
        index = self.index
        if head is not None:
            h, index = self._head(head)
            query = h.augment(query, v)  # (1, d + C)
        skip = id_set(exclude)

        def best(n: int) -> list[Hit]:  # the n best, the excluded left out
            want = min(n + len(skip), len(self))
            if filter is not None:
                scores, ids = self.filtered.search_filter(index, query, want, filter)  # (1, <= want)
            else:
                scores, ids = search_index(index, query, want)  # (1, want)
            kept = [(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0 and i not in skip][:n]
            return self._hits([i for i, _ in kept], [s for _, s in kept])

        return ranked(best, win)

    def check_vector(self, vector) -> np.ndarray:
        """A (D,) float32 copy of ``vector``, or InvalidVectorError saying what is wrong with it."""
        return check_query_vector(vector, self.dim, self.backbone)

    # ------------------------------------------------------------ heads
    def head_names(self) -> list[str]:
        """The heads this version can use (damaged ones are left out, see ``heads.damaged``)."""
        return self.heads.names()

    @_newest_if_gone
    def classify_vector(self, vector, head: str, top: int = 5) -> list[tuple[str, float]]:
        """Best ``top`` (class, probability) pairs of head ``head`` for a (D,) embedding."""
        if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
            raise InvalidInputError(f"top must be a positive integer, got {quote(top)}")
        h, _ = self._head(head)
        return h.top(self.check_vector(vector)[None], top)[0]

    @_newest_if_gone
    def classify(self, image: ImageSource, head: str, top: int = 5, *,
                 max_pixels: int | None = None, box=None) -> list[tuple[str, float]]:
        """Classify an image (``box``: a region of it) with a trained head: [(class, probability), ...], best first."""
        self._head(head)  # fail on a bad head name before embedding
        return self.classify_vector(self.embed_images([image], max_pixels=max_pixels, box=box)[0], head, top)

    @_newest_if_gone
    def classify_id(self, row_id: int, head: str, top: int = 5, *, box=None) -> list[tuple[str, float]]:
        return self.classify_vector(self._query_vector(row_id, box), head, top)

    @_newest_if_gone
    def head(self, name: str):
        """The trained head ``name`` (raises HeadError for an unknown or mismatched head)."""
        return self._head(name)[0]

    def _head(self, name: str):
        return self.heads.get(name)

    @_newest_if_gone
    def search_id(self, row_id: int, k: int | None = None, *, head: str | None = None,
                  min_score: float | None = None, offset: int | None = None, box=None, filter=None,
                  query: Query | None = None) -> list[Hit]:
        """Nearest images to an indexed image ("more like this"), itself excluded; with ``box``, to that
        region of its file (decoded again at full resolution), and the image itself is a result like any other."""
        q = as_query(query, k, head=head, min_score=min_score, offset=offset, box=box, filter=filter)
        if q.head is not None:
            self._head(q.head)  # fail on a bad head name before decoding a region
        return self._search(self._query_vector(row_id, q.box), q, exclude=None if q.box else int(row_id))

    def _query_vector(self, row_id: int, box) -> np.ndarray:
        """The stored embedding of ``row_id``, or with ``box`` the embedding of that region of its file."""
        if box is None:
            return self.vector(row_id)
        box = parse_box(box)  # (a checked box passes as it is) a bad box is refused before the file is read
        image = load_indexed_image(self, row_id, self.config.max_pixels)  # checked: the picture indexed
        return self.embed_images([image], max_pixels=self.config.max_pixels, box=box)[0]

    @_newest_if_gone
    def vector(self, row_id: int) -> np.ndarray:
        """The stored (D,) embedding of an indexed image."""
        if (row := self.catalog.row(row_id)) is None:
            raise UnknownIdError(row_id)
        if (vec := self.store.read_embedding([self.catalog.shard_of(row)], int(row_id))) is None:
            raise UnknownIdError(row_id)
        return vec

    @_newest_if_gone
    def matching(self, filter) -> int:
        """How many images ``filter`` selects (InvalidFilterError, UnknownLabelError for a bad one)."""
        return len(self) if (flt := as_filter(filter)) is None else self.filtered.select(flt).count

    @_newest_if_gone
    def labels(self) -> list[str]:
        """Every label of this version, sorted (as the file system names them: ``display_text`` to show)."""
        return self.catalog.distinct_labels()  # from the labels' codes: the filter columns are not read

    @_newest_if_gone
    def duplicates(self, threshold: float | None = None, keep: str | None = "largest", keypoints=True, progress=None):
        """Every group of near-duplicates and of exact copies in this version (``search/duplicates/groups.py``),
        once per version, ``threshold``, ``keep`` and ``keypoints``; ``progress``: ``search/duplicates/progress.py``."""
        return self.duplicate_reports.get(self, threshold, keep, keypoints, progress)

    @_newest_if_gone
    def explain(self, query, result_id: int, *, head: str | None = None, max_pixels: int | None = None, box=None):
        """``result_id``'s score for ``query`` split over both images' cells; ``box``: for that region of the query."""
        box = None if box is None else parse_box(box)  # InvalidBoxError before a model is loaded or a file read
        region = None if box is None else (box, lambda data, limit: crop_region(data, box, limit))
        return explain_pair(self, query, result_id, head=head, max_pixels=max_pixels, region=region)

    def thumbnail(self, row_id: int, size: int | None = None, *, max_decoded_pixels: int | None = None) -> bytes:
        """Image ``row_id`` as JPEG bytes, fitted in ``size`` x ``size``; ``ImageUnavailableError`` if unreadable,
        ``ChangedFileError`` if changed since indexed, ``ImageTooLargeError`` over ``max_decoded_pixels``."""
        return thumbnail_jpeg(self, row_id, size, self.config.max_pixels, max_decoded_pixels=max_decoded_pixels)

    @_newest_if_gone
    def get(self, row_id: int) -> Hit:
        """Metadata of one indexed image (score 1.0)."""
        return self._hits([int(row_id)], [1.0])[0]

    @_newest_if_gone
    def get_many(self, row_ids) -> list[Hit]:
        """Metadata of several indexed images (score 1.0), in that order; their paths read a row group
        at a time (UnknownIdError for the first id not in this version)."""
        row_ids = [int(i) for i in row_ids]
        return self._hits(row_ids, [1.0] * len(row_ids))

    def _hits(self, row_ids: list[int], scores: list[float]) -> list[Hit]:
        if len(rows := self.catalog.rows(row_ids)) and rows.min() < 0:
            raise UnknownIdError(row_ids[int(np.argmin(rows))])
        paths = self.catalog.paths(rows)
        return [Hit(i, p, self.catalog.label(r), s) for i, p, r, s in zip(row_ids, paths, rows.tolist(), scores)]

    def warm_up(self) -> None:
        """Load and trace the CNN now, so the first query-by-image is not slow (vectors made elsewhere: no model)."""
        if is_external(self.manifest):
            return log.info("%s holds vectors made elsewhere: no model to warm up", self.store.root)
        size = (embedder := self._get_embedder()).backbone.input_size
        embedder.embed(np.zeros((1, size, size, 3), np.uint8))

    def _get_embedder(self):
        with self._lock:
            if self._embedder is None:
                check_image_queries(self.manifest)  # vectors made elsewhere: no model to embed an image
                from imgsearch.indexer.model.backbones import load_backbone
                from imgsearch.indexer.model.embedder import Embedder

                bb = load_backbone(self.backbone, self.config.weights, self.config.cache_dir,
                                   recorded_model_spec(self.manifest))
                check_compatible(self.manifest, bb.name, bb.dim, str(self.store.root), bb.extra)
                # the index's precision, whatever the config says: one index never mixes two models
                self._embedder = Embedder(bb, self.config.batch_size, self.config.runtime, self.config.cache_dir,
                                          **model_precision(self.manifest))
            return self._embedder
