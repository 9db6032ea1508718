"""Answering queries against one index folder."""

from __future__ import annotations

import functools
import logging
import os
import threading
from dataclasses import asdict, dataclass

import numpy as np

from indexer.config import IndexConfig, check_max_pixels  # noqa: F401 - the web app checks its limit with it
from indexer.errors import InvalidInputError, NotFoundError, quote
from indexer.folder.manifest import (
    backbone_name,
    check_compatible,
    model_precision,
    precision,
    resample,
)
from indexer.folder.store import EmbeddingStore, IndexFormatError
from indexer.folder.texts import display_text, texts_of  # noqa: F401 - web shows paths with display_text
from indexer.folder.whitening import search_space
from indexer.inputs.images import ImageSource, decode_image
from indexer.vectors import search_index
from search.duplicates import DuplicateCache
from search.filtered import FilteredSearch
from search.filters import as_filter
from search.heads import HeadCatalog, HeadDamagedError
from search.opening import open_version
from search.thumbnails import thumbnail_jpeg

log = logging.getLogger(__name__)

MAX_K = 1000
OPEN_ATTEMPTS = 5  # opening races at most this many publishes in a row


def _newest_if_gone(method):
    """A query that reads the version's files (shards, whitening, a head's index) is answered by the
    newest version instead when they are gone because newer versions were published meanwhile (the
    store deletes a version's files once it is two versions old): the engine's ReloadingEngine opens
    the newest, which then answers every later call made on this engine too.  Tried once: a file
    missing or damaged in the newest version is an error as before."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if self._successor is not None:
            return method(self._successor, *args, **kwargs)
        try:
            return method(self, *args, **kwargs)
        except (IndexFormatError, HeadDamagedError):
            newer = self._newer_version()
            if newer is None:
                raise
            return method(newer, *args, **kwargs)
    return call


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    label: str
    score: float  # cosine similarity, 1 = identical direction

    def to_dict(self) -> dict:
        return asdict(self)


class InvalidVectorError(InvalidInputError):
    """A query vector is not the index's dimension of finite numbers."""


class UnknownIdError(NotFoundError, KeyError):
    """No image with this id is in the index."""

    def __init__(self, row_id):
        super().__init__(row_id)
        self.id = row_id

    def __str__(self) -> str:
        return f"no image with id {self.id} in the index"


class SearchEngine:
    """Query-by-image, by vector and by id over a published index folder.

    Use ``SearchEngine.open(DIR)``.  The CNN is loaded on the first
    query-by-image, so serving by id or vector needs no TensorFlow.

    An engine answers from the version of the folder it opened, however often
    the indexer publishes: ``reload()`` gives an engine over the version
    published now, and ``SearchEngine.open(DIR, auto_reload=True)`` one that
    follows new versions by itself (``search/reloading.py``).
    """

    def __init__(self, store: EmbeddingStore, manifest: dict, index, metadata, config: IndexConfig,
                 device: str = "cpu"):
        self.store = store
        self.manifest = manifest
        self.index = index
        self.config = config
        self._ids = metadata.column("id").to_numpy()  # (n,) int64
        self._paths = texts_of(metadata, "path")  # the file system's names, whatever their bytes
        self._labels = texts_of(metadata, "label")
        self._row_of = {int(i): r for r, i in enumerate(self._ids)}
        self._embedder = None
        self.heads = HeadCatalog(store, manifest, searchable=index is not None)
        self._lock = threading.Lock()
        self.device = device  # where FAISS searches: "cpu" or "gpu"
        self._signature = None  # of the manifest file this engine was opened from
        # set by a ReloadingEngine: engine -> the newest version, for when this one's files are gone
        self._reopen = None
        self._successor = None  # the newer version answering for this one, once its files were found gone
        self._duplicates = DuplicateCache()  # this version's duplicate reports
        self.filtered = FilteredSearch(store, manifest["shards"], self._ids)  # metadata read on first use

    @classmethod
    def open(cls, index_dir: str | os.PathLike, *, backbone: str | None = None,
             config: IndexConfig | None = None, verify: bool = False, auto_reload: bool = False,
             reload_interval: float = 1.0):
        """Open a published index; ``backbone``, if given, must be the one it was built with.

        Checks that the published files are all there with the sizes the manifest
        recorded, and that the shards and the FAISS index hold as many vectors of
        the dimension it says; ``verify=True`` also reads every file and checks its
        sha256 (``imgsearch verify``).  A damaged index raises ``IndexFormatError``.
        ``auto_reload=True`` returns a ``ReloadingEngine`` that picks up newly
        published versions (checking at most every ``reload_interval`` seconds).
        """
        if auto_reload:
            from search.reloading import ReloadingEngine

            return ReloadingEngine(cls.open(index_dir, backbone=backbone, config=config, verify=verify),
                                   interval=reload_interval)
        store = EmbeddingStore(index_dir)
        for attempt in range(OPEN_ATTEMPTS):
            signature = store.manifest_signature()
            try:
                if verify:
                    from indexer.folder.verify import verify_index

                    verify_index(index_dir).raise_if_damaged()
                engine = cls._open_version(store, backbone, config)
            except IndexFormatError:
                # a file gone or changed because a newer version was published meanwhile: open that one
                if attempt + 1 == OPEN_ATTEMPTS or store.manifest_signature() == signature:
                    raise
                log.info("%s was republished while it was being opened; opening the new version", index_dir)
                continue
            return engine

    @classmethod
    def _open_version(cls, store: EmbeddingStore, backbone: str | None,
                      config: IndexConfig | None) -> "SearchEngine":
        """Open the version published now (one attempt)."""
        v = open_version(store, backbone, config)
        engine = cls(store, v.manifest, v.index, v.metadata, v.config, device=v.device)
        engine._signature = v.signature
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
        """An engine over the version published now, sharing this one's loaded model.

        Returns this engine if nothing was published since it was opened.  This
        engine is not changed: requests it is answering finish on its version.
        """
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
        m = self.manifest
        return {
            "index_dir": str(self.store.root),
            "backbone": m["backbone"],
            "dim": m["dim"],
            "count": m["count"],
            "metric": m["metric"],
            "index_type": m.get("index_type"),
            "ann": m.get("ann") and dict(m["ann"], device=self.device),
            "runtime": m.get("runtime"),
            "whitening": m.get("whitening"),
            "heads": self.head_names(),
            "shards": len(m["shards"]),
            "generation": m.get("generation", 0),
            "created": m.get("created"),
            "updated": m.get("updated"),
            "versions": m.get("versions"),
        }

    # ------------------------------------------------------------ queries
    def embed_images(self, images: list[ImageSource], *, max_pixels: int | None = None) -> np.ndarray:
        """Embed query images with the index's backbone: -> (q, D) unit vectors.

        Raises ImageDecodeError for a bad image, ImageTooLargeError for one over
        ``max_pixels`` (default: the config's), before any is embedded.
        """
        embedder = self._get_embedder()
        size = embedder.backbone.input_size
        limit = self.config.max_pixels if max_pixels is None else max_pixels
        batch = np.stack([decode_image(img, size, limit, resample(self.manifest)).array for img in images])  # (q,S,S,3)
        return embedder.embed(batch)

    @_newest_if_gone
    def search_image(self, image: ImageSource, k: int = 10, *, head: str | None = None,
                     max_pixels: int | None = None, filter=None) -> list[Hit]:
        """Nearest images to an image given as a path, bytes, file object or PIL image.

        ``max_pixels``: refuse (ImageTooLargeError) an image declaring more pixels (default: the config's).
        """
        k, filter = _check_k(k), as_filter(filter)  # a bad filter fails before embedding
        if head is not None:
            self._head(head)  # fail on a bad head name before embedding
        return self.search_vector(self.embed_images([image], max_pixels=max_pixels)[0], k, head=head, filter=filter)

    @_newest_if_gone
    def search_vector(self, vector, k: int = 10, *, exclude: int | None = None,
                      head: str | None = None, filter=None) -> list[Hit]:
        """Nearest images to a (D,) embedding-space vector.

        With ``head``, similarity blends in that head's class probabilities
        (head-aware search); otherwise plain cosine similarity.  ``filter``: only
        images whose metadata it selects (``search/filters.py``), searched inside FAISS.
        """
        k, filter = _check_k(k), as_filter(filter)
        v = self.check_vector(vector)[None]  # (1, D)
        if self.index is None or len(self) == 0:
            return []
        query = search_space(v, self.store.root, self.manifest)  # (1, d)
        index = self.index
        if head is not None:
            h, index = self._head(head)
            query = h.augment(query, v)  # (1, d + C)
        want = min(k + (exclude is not None), len(self))
        if filter is not None:
            scores, ids = self.filtered.search_filter(index, query, want, filter)  # (1, <= want)
        else:
            scores, ids = search_index(index, query, want)  # (1, want)
        hits = [self._hit(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0 and i != exclude]
        return hits[:k]

    def check_vector(self, vector) -> np.ndarray:
        """A (D,) float32 copy of ``vector``, or InvalidVectorError saying what is wrong with it."""
        try:
            with np.errstate(over="ignore"):  # a float beyond float32 becomes inf, refused below
                v = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError, OverflowError) as exc:  # e.g. an int too large for a float
            raise InvalidVectorError(f"query vector must be {self.dim} finite numbers: {exc}") from None
        if v.ndim != 1 or v.shape[0] != self.dim:
            raise InvalidVectorError(
                f"query vector has shape {v.shape}, this index ({self.backbone}) needs ({self.dim},)"
            )
        if not np.all(np.isfinite(v)):
            raise InvalidVectorError("query vector contains NaN or infinity")
        return v

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
                 max_pixels: int | None = None) -> list[tuple[str, float]]:
        """Classify an image with a trained head: [(class, probability), ...], best first."""
        self._head(head)  # fail on a bad head name before embedding
        return self.classify_vector(self.embed_images([image], max_pixels=max_pixels)[0], head, top)

    @_newest_if_gone
    def classify_id(self, row_id: int, head: str, top: int = 5) -> list[tuple[str, float]]:
        return self.classify_vector(self.vector(row_id), head, top)

    @_newest_if_gone
    def head(self, name: str):
        """The trained head ``name`` (raises HeadError for an unknown or mismatched head)."""
        return self._head(name)[0]

    def _head(self, name: str):
        return self.heads.get(name)

    @_newest_if_gone
    def search_id(self, row_id: int, k: int = 10, *, head: str | None = None, filter=None) -> list[Hit]:
        """Nearest images to an indexed image ("more like this"), itself excluded."""
        return self.search_vector(self.vector(row_id), k, exclude=int(row_id), head=head, filter=filter)

    @_newest_if_gone
    def vector(self, row_id: int) -> np.ndarray:
        """The stored (D,) embedding of an indexed image."""
        if int(row_id) not in self._row_of:
            raise UnknownIdError(row_id)
        vec = self.store.read_embedding(self.manifest["shards"], int(row_id))
        if vec is None:
            raise UnknownIdError(row_id)
        return vec

    @_newest_if_gone
    def matching(self, filter) -> int:
        """How many images ``filter`` selects (InvalidFilterError, UnknownLabelError for a bad one)."""
        return len(self) if (flt := as_filter(filter)) is None else self.filtered.select(flt).count

    @_newest_if_gone
    def labels(self) -> list[str]:
        """Every label of this version, sorted (as the file system names them: ``display_text`` to show)."""
        return self.filtered.columns().labels()

    @_newest_if_gone
    def duplicates(self, threshold: float | None = None, keep: str | None = "largest", keypoints: bool = True):
        """Every group of near-duplicates and of exact copies in this version (``search/duplicates.py``),
        computed once per version, ``threshold`` (None: the default), ``keep`` rule and ``keypoints``."""
        return self._duplicates.get(self, threshold, keep, keypoints)

    def thumbnail(self, row_id: int, size: int | None = None, *, max_decoded_pixels: int | None = None) -> bytes:
        """Image ``row_id`` as JPEG bytes, fitted in ``size`` x ``size``; ``ImageUnavailableError`` if unreadable,
        ``ImageTooLargeError`` if decoding it would take more than ``max_decoded_pixels``."""
        return thumbnail_jpeg(self.get(row_id).path, size, self.config.max_pixels, name=f"image {row_id}",
                              max_decoded_pixels=max_decoded_pixels)

    def get(self, row_id: int) -> Hit:
        """Metadata of one indexed image (score 1.0)."""
        return self._hit(int(row_id), 1.0)

    def _hit(self, row_id: int, score: float) -> Hit:
        row = self._row_of.get(row_id)
        if row is None:
            raise UnknownIdError(row_id)
        return Hit(row_id, self._paths[row], self._labels[row], score)

    def warm_up(self) -> None:
        """Load and trace the CNN now, so the first query-by-image is not slow."""
        size = self._get_embedder().backbone.input_size
        self._get_embedder().embed(np.zeros((1, size, size, 3), np.uint8))

    def _get_embedder(self):
        with self._lock:
            if self._embedder is None:
                from indexer.model.backbones import load_backbone
                from indexer.model.embedder import Embedder

                bb = load_backbone(self.backbone, self.config.weights, self.config.cache_dir)
                check_compatible(self.manifest, bb.name, bb.dim, str(self.store.root))
                # the index's precision, whatever the config says: one index never mixes two models
                self._embedder = Embedder(bb, self.config.batch_size, self.config.runtime, self.config.cache_dir,
                                          **model_precision(self.manifest))
            return self._embedder


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"k must be an integer, got {quote(k)}")
    if not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be between 1 and {MAX_K}, got {k}")
    return int(k)


def hits_to_json(query: str, hits: list[Hit]) -> dict:
    return {"query": query, "results": [h.to_dict() for h in hits]}
