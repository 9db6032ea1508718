"""The heads of one published version, as a search engine uses them at query time.

Heads are checked when the version is opened: a damaged one (unreadable files,
a missing search index) is left out of the version's heads and logged, and a
query naming it gets ``HeadDamagedError`` (409 over HTTP), while every other
head and plain search keep working.  Heads load lazily, once per version, and
again when their files change: a head trained, retrained or deleted while the
version is served (``imgsearch train-head``, ``POST /api/heads``) is seen by
the next query, without a new version being published (one stat per query).
"""

from __future__ import annotations

import logging
import threading

from imgsearch.indexer.folder.heads import (
    NAME_PATTERN,
    Head,
    HeadDamagedError,
    HeadError,
    head_index_path,
    heads_root,
    list_heads,
    load_head,
)
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.learn.fewshot import DEFAULT_MODEL, MODELS

log = logging.getLogger(__name__)


class HeadCatalog:
    def __init__(self, store: EmbeddingStore, manifest: dict, searchable: bool):
        """``searchable``: the version has a FAISS index, so each head needs its head-aware index too."""
        self.store, self.manifest, self.searchable = store, manifest, searchable
        self._loaded: dict[str, tuple[Head, object]] = {}  # name -> (head, head-aware FAISS index or None)
        self._signatures: dict[str, tuple] = {}  # name -> its head.json's signature when loaded or found damaged
        self._lock = threading.Lock()
        self.damaged: dict[str, str] = {}  # name -> why it is left out
        for name in list_heads(store.root):
            self._check(name)

    def _check(self, name: str) -> None:
        self._signatures[name] = self._signature(name)
        try:
            load_head(self.store.root, name, self.manifest)  # small: weights (D, C)
            self._index_path(name, must_exist=True)
        except HeadDamagedError as exc:
            self.damaged[name] = str(exc)
            log.warning("%s: head %r left out: %s", self.store.root, name, exc)

    def _signature(self, name: str) -> tuple | None:
        """Which head.json this is: a save replaces the head's folder, so a new one is a new inode."""
        try:
            st = (heads_root(self.store.root) / name / "head.json").stat()
        except (OSError, ValueError):
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _refresh(self, name: str) -> None:
        """Forget what is known of ``name`` if its files changed since (called holding ``_lock``)."""
        if name in self._signatures and self._signatures[name] != self._signature(name):
            self._loaded.pop(name, None)
            self._signatures.pop(name, None)
            if self.damaged.pop(name, None) is not None and self._signature(name) is not None:
                self._check(name)

    def names(self) -> list[str]:
        """The heads that can be used: every head in the folder but the damaged ones."""
        with self._lock:
            for name in list(self.damaged):
                self._refresh(name)
        return [n for n in list_heads(self.store.root) if n not in self.damaged]

    def get(self, name: str) -> tuple[Head, object]:
        """(head, its head-aware FAISS index); HeadError if unknown, HeadDamagedError if damaged."""
        with self._lock:
            self._refresh(name)
        if name in self.damaged:
            raise HeadDamagedError(self.damaged[name])
        with self._lock:
            if name not in self._loaded:
                self._signatures[name] = self._signature(name)
                head = load_head(self.store.root, name, self.manifest)
                index = None
                if self.searchable:
                    rel = str(self._index_path(name, must_exist=True).relative_to(self.store.root))
                    try:
                        index = self.store.read_index(rel)
                    except (RuntimeError, OSError) as exc:  # FAISS cannot read it: truncated, not an index
                        self.damaged[name] = self._retrain(name, f"its search index {rel} is unreadable ({exc})")
                        raise HeadDamagedError(self.damaged[name]) from None
                self._loaded[name] = (head, index)
            return self._loaded[name]

    def _index_path(self, name: str, must_exist: bool):
        path = head_index_path(self.store.root, name, self.manifest)
        if must_exist and self.searchable and not path.is_file():
            raise HeadDamagedError(self._retrain(name, f"it has no search index for version "
                                                       f"{self.manifest.get('generation', 0)} ({path.name} is missing)"))
        return path

    def _retrain(self, name: str, why: str) -> str:
        return (f"head {name!r} in {self.store.root} is damaged: {why}; retrain it with "
                f"'imgsearch train-head --index {self.store.root} --name {name}'")


def head_summary(head: Head) -> dict:
    """What a person or JSON reads of a head: its classes, model family, calibration and metrics."""
    return {"name": head.name, "classes": head.classes, "model": head.model, "calibration": head.calibration,
            "search_weight": head.search_weight, "created": head.created, "labels_source": head.labels_source,
            "metrics": head.metrics}


__all__ = ["DEFAULT_MODEL", "MODELS", "NAME_PATTERN", "HeadCatalog", "HeadError", "HeadDamagedError", "head_summary"]
