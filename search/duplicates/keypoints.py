"""Pixel evidence that two images are one picture, for the duplicate groups: each image's local features once.

``KeypointMatcher(engine)`` holds each image's ``LocalFeatures``
(``indexer/inputs/local_features.py``: ORB keypoints and a small RGB
thumbnail), computed once per matcher from the image's file (decoded once,
at most ``max_pixels``), and the ``Evidence`` of each pair it was asked about
(``search/duplicates/verifier.py``: one similarity transform that must
explain the pair, or, without corners, a dense alignment of the thumbnails).
The features come from the folder's side table (``indexer/folder/features.py``,
written by ``imgsearch index`` with the shards, or by ``--refresh-features``
for an older index), memory-mapped, where it holds the image's current
content (its stored sha256 is the version's), from the file otherwise; a
stored image's features are views of the map made when asked, never all
held (memory does not grow with the table).  ``prepare(pairs)`` judges many
pairs at once in worker processes (``parallel.py``, which map the table too
and are sent the ids of stored images), with the same evidence; within
``running()`` those processes are started once for every call.
``evidence(keeper, member)`` is the verdict with its numbers; a pair whose
file is gone has ``check="none"`` and no verdict (its cosine score decides).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from imgsearch.indexer.errors import ImgsearchError
from imgsearch.indexer.folder.features import read_features
from imgsearch.indexer.inputs.local_features import THUMB, LocalFeatures, cv2_module, local_features
from imgsearch.search.duplicates.parallel import Workers, compare_pairs, kept
from imgsearch.search.duplicates.verifier import Evidence, compare, keypoints_verdict, shared_corners
from imgsearch.search.errors import ChangedFileError
from imgsearch.search.thumbnails import load_indexed

log = logging.getLogger(__name__)


def _unordered(a: int, b: int) -> tuple[int, int]:
    """An unordered pair's key: its evidence is judged with the lower id as the keeper."""
    return min(a, b), max(a, b)


class KeypointMatcher:
    """Local features of an index's images, each computed once (from its file), and the evidence of a pair."""

    def __init__(self, engine, max_pixels: int | None = None, workers: int | None = None):
        cv2_module()  # a MissingDependencyError saying what to install, before any work
        self.engine = engine
        self.max_pixels = max_pixels or engine.config.max_pixels
        self._found: dict[int, LocalFeatures | None] = {}  # computed from files (not those of the table)
        self._evidence: dict[tuple[int, int], Evidence] = {}  # a pair checked once serves every threshold
        self.unreadable = 0  # images whose file could not be read: their pairs are not confirmed
        self.changed: list[int] = []  # ids whose file changed since indexed: their pairs are not judged either
        self.from_files = 0  # images whose features were computed from their file (none stored, or stale)
        self.workers = workers  # processes judging many pairs (``parallel.compare_pairs``); None: one per core
        self._stored = None  # the folder's side table, mapped once
        self._kept: OrderedDict = OrderedDict()  # features read from it lately (``parallel.kept``)
        self._current = np.empty(0, np.int64)  # sorted ids whose stored features are of their current content
        self._running: Workers | None = None  # processes kept for every call (``running``)

    @contextmanager
    def running(self):
        """Within: the verifying processes, once started, judge every call's pairs (``parallel.Workers``),
        small calls too; they end with the context."""
        if self._running is not None:  # already within
            yield self
            return
        with Workers(self.workers) as self._running:
            try:
                yield self
            finally:
                self._running = None

    def _table(self):
        if self._stored is None:
            self._stored = read_features(self.engine.store.root)
            if len(self._stored):
                table = self.engine.store.read_table(self.engine.manifest["shards"], ["id", "sha256"])
                self._current = self._stored.current(table.column("id").to_numpy(), table.column("sha256"))
        return self._stored

    def stored(self, row_id: int) -> bool:
        """Whether the side table holds ``row_id``'s features for its current content."""
        self._table()
        at = int(np.searchsorted(self._current, row_id))
        return at < len(self._current) and int(self._current[at]) == row_id

    def features(self, row_id: int) -> LocalFeatures | None:
        """The image's keypoints and thumbnail, or None when its file cannot be read any more."""
        if self.stored(row_id):  # views of the mapped table, the last KEPT of them kept (with what the
            return kept(self._kept, row_id, lambda: self._stored[row_id][1])  # verifier derived from them)
        if row_id not in self._found:
            self.from_files += 1
            try:
                img, _, _ = load_indexed(self.engine, row_id, min_size=THUMB, max_pixels=self.max_pixels)
                self._found[row_id] = local_features(img)
            except ChangedFileError as exc:  # not the picture indexed: no evidence for or against its pairs
                log.warning("local features of image %d not computed: %s", row_id, exc)
                self.changed.append(row_id)
                self._found[row_id] = None
            except (ImgsearchError, OSError):
                self.unreadable += 1
                self._found[row_id] = None
        return self._found[row_id]

    def evidence(self, keeper: int, member: int) -> Evidence:
        """Why ``member`` is (or is not) ``keeper``'s picture edited; computed once per ordered pair."""
        key = (keeper, member)
        if key not in self._evidence:
            self._evidence[key] = compare(self.features(keeper), self.features(member))
        return self._evidence[key]

    def prepare(self, pairs, done=None, ordered: bool = False) -> None:
        """Judge the unordered ``pairs`` (a, b) not judged yet, many at once (``parallel.compare_pairs``: the
        same evidence as ``evidence(min, max)`` one at a time); ``done(k)``: progress.  ``ordered``: each as
        given, (keeper, member), the evidence ``evidence(keeper, member)`` and ``member_evidence`` then find
        (the groups' members against their keepers: judged at once rather than one by one)."""
        todo = self._unjudged(pairs, (lambda a, b: (a, b)) if ordered else _unordered)
        for pair, found in zip(todo, compare_pairs(todo, self.features, self.workers, done, self._table_for_workers(),
                                                          kept=self._running)):
            self._evidence[pair] = found

    def prepare_keypoints(self, pairs, done=None) -> None:
        """Judge the unordered ``pairs`` not judged yet by their keypoints alone (``verifier.keypoints_verdict``),
        many at once; a pair the keypoint check decides has its evidence (the same as ``evidence``'s), the
        others are left unjudged (``evidence`` would need the dense check)."""
        todo = self._unjudged(pairs, _unordered)
        for pair, found in zip(todo, compare_pairs(todo, self.features, self.workers, done, self._table_for_workers(),
                                                   judge=keypoints_verdict, kept=self._running)):
            if found is not None:
                self._evidence[pair] = found

    def _unjudged(self, pairs, key) -> list:
        """The keys (``key(a, b)``) of ``pairs`` without evidence yet, once each, in their order."""
        return list(dict.fromkeys(k for k in (key(int(a), int(b)) for a, b in pairs) if k not in self._evidence))

    def judged(self, a: int, b: int) -> bool:
        """Whether the unordered pair has its evidence already."""
        return _unordered(a, b) in self._evidence

    def shared_corners(self, pairs, done=None) -> np.ndarray:
        """For each (a, b) of ``pairs``: how many of b's corners match a's (``verifier.shared_corners``, in
        worker processes as ``prepare``); not kept."""
        pairs = [(int(a), int(b)) for a, b in pairs]
        return np.array(compare_pairs(pairs, self.features, self.workers, done, self._table_for_workers(),
                                      judge=shared_corners, kept=self._running), np.int64).reshape(len(pairs))

    def _table_for_workers(self) -> tuple | None:
        """What the worker processes need to read the mapped side table themselves (``parallel.compare_pairs``)."""
        table = self._table()
        return (table.path, table.identity, self._current) if table.mapped else None

    def verdict(self, a: int, b: int) -> bool | None:
        """True (one picture), False (two), None (no evidence: a file gone)."""
        return self.evidence(*_unordered(a, b)).match

    def member_evidence(self, keeper: int, member: int, score: float, threshold: float) -> dict:
        """A group member's evidence (``DuplicateGroup.evidence``): its cosine, what decided, the numbers."""
        found = self.evidence(keeper, member)
        decided = "cosine"
        if score < threshold:  # only the verifier puts a member below the threshold in a group
            if not found.match:  # confirmed by the pair's own check, or against another keeper's member
                found = self.evidence(*_unordered(keeper, member))
            decided = found.check
        return {"cosine": score, "decided_by": decided, **found.to_dict()}
