"""Marks of "not a duplicate" as a duplicates run applies them (``indexer/folder/dup_marks.py`` stores them).

A mark names two contents (sha256); in a version, they are the ids holding
them now (a content no longer indexed leaves its marks idle).  A marked pair
is never in one group: its edge is dropped before the components are found
(``drop``), and when a keeper's group is formed (``separate``) a member marked
against the keeper, or against a member already in the group (a better score
against the keeper first), leaves it and is grouped again with the others left
out, by the same rules.  A mark of a whole group marks every pair in it, so
it separates all its members.
"""

from __future__ import annotations

import os

import numpy as np

from imgsearch.indexer.folder.dup_marks import MAX_MARK_IDS, listing, marks_path, read_marks
from imgsearch.search.duplicates.pairs import Pairs

__all__ = ["MAX_MARK_IDS", "MAX_REMOVE", "Marks", "marks_stamp"]
MAX_REMOVE = 1000  # ids one request of the review removes from the index (POST /api/duplicates/remove)


def marks_stamp(engine) -> tuple | None:
    """What changes whenever the marks file is replaced (None: no file): part of a cached report's key."""
    try:
        st = os.stat(marks_path(engine.store.root))
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class Marks:
    """The marked pairs of ``engine``'s version, as ids (a, b), a < b."""

    def __init__(self, engine):
        self.pairs: set[tuple[int, int]] = set()
        self.marks = read_marks(engine.store.root)
        self.by_sha = _ids_by_sha(engine) if self.marks else {}
        for m in self.marks:
            a, b = self.by_sha.get(m.sha256[0]), self.by_sha.get(m.sha256[1])
            if a is not None and b is not None and a != b:
                self.pairs.add((min(a, b), max(a, b)))
        self.partners: dict[int, set[int]] = {}  # id -> the ids marked against it
        for a, b in self.pairs:
            self.partners.setdefault(a, set()).add(b)
            self.partners.setdefault(b, set()).add(a)

    def listing(self) -> list[dict]:
        """Every mark as listed (``GET /api/duplicates/marks``), ids as in this version."""
        return listing(self.marks, self.by_sha)

    def __len__(self) -> int:
        return len(self.pairs)

    def drop(self, pairs: Pairs) -> Pairs:
        """``pairs`` without the marked ones."""
        if not self.pairs or not len(pairs):
            return pairs
        firsts = np.fromiter((a for a, _ in self.pairs), np.int64)
        keep = np.ones(len(pairs), bool)
        for i in np.flatnonzero(np.isin(pairs.a, firsts)):
            keep[i] = (int(pairs.a[i]), int(pairs.b[i])) not in self.pairs
        return pairs if keep.all() else Pairs(pairs.a[keep], pairs.b[keep], pairs.score[keep], pairs.method)

    def separate(self, ids: np.ndarray, keeper: int, scores: np.ndarray, passed: np.ndarray) -> np.ndarray:
        """``passed`` (members of ``ids`` joining ``keeper``'s group) without any member marked against the
        keeper or against a member with a better score that stays."""
        if not self.pairs:
            return passed
        passed = passed.copy()
        staying = {int(keeper)}
        none: set[int] = set()
        for i in np.argsort(-scores, kind="stable"):  # each member against its own marks: O(members + marks)
            if not passed[i]:
                continue
            member = int(ids[i])
            if member != keeper and self.partners.get(member, none) & staying:
                passed[i] = False
            else:
                staying.add(member)
        return passed


def _ids_by_sha(engine) -> dict[str, int]:
    table = engine.store.read_table(engine.manifest["shards"], ["id", "sha256"])
    return dict(zip(table.column("sha256").to_pylist(), table.column("id").to_pylist()))
