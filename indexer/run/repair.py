"""``repair_index(DIR)``: rebuild the FAISS index and the heads' search indexes from the intact
shards, and drop damaged shards from the index (their images are then indexed again by the
next ``imgsearch index``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from imgsearch.indexer.errors import DamagedIndexError
from imgsearch.indexer.folder.evidence import read_evidence
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.store import (
    EmbeddingStore,
    IndexFormatError,
)
from imgsearch.indexer.folder.verify import VerifyReport, verify_index

log = logging.getLogger(__name__)


@dataclass
class RepairResult:
    before: VerifyReport
    after: VerifyReport
    dropped_shards: list[str]
    dropped_images: int

    def lines(self) -> list[str]:
        out = [f"repaired {self.before.index_dir}: rebuilt the FAISS index and head indexes from "
               f"{self.after.shards} intact shard(s)"]
        if self.dropped_shards:
            out.append(f"dropped {len(self.dropped_shards)} damaged shard(s) ({', '.join(self.dropped_shards)}) "
                       f"with {self.dropped_images} image(s): run 'imgsearch index' on their folders to embed "
                       "them again")
        return out + self.after.lines()


class RepairWouldDropError(DamagedIndexError):
    """Repairing would publish fewer images than the folder holds: nothing was changed; allow it explicitly."""


def repair_index(index_dir, *, wait: bool = True, allow_drop: bool = False) -> RepairResult:
    """Republish the index from its intact shards: a new FAISS index and head indexes.

    A damaged shard's images are dropped only with ``allow_drop`` (else RepairWouldDropError, nothing
    changed); the result lists what was dropped.  Raises IndexFormatError if the damage cannot be repaired
    this way (a manifest that the data contradicts, whitening, a head's own files, duplicate ids).  Holds
    the folder's writer lock, checking included (``wait=False``: IndexLockedError at once if another writer has it).
    """
    with writer_lock(index_dir, wait=wait):
        return _repair(index_dir, allow_drop)


def _repair(index_dir, allow_drop: bool = False) -> RepairResult:
    from imgsearch.indexer.publish.version import publish_index

    before = verify_index(index_dir)
    if before.ok:
        return RepairResult(before, before, [], 0)
    fatal = [p for p in before.problems if not p.repairable]
    if fatal:
        raise IndexFormatError("cannot repair in place:\n" + "\n".join(f"  {p.path or p.part}: {p.message}"
                                                                     for p in fatal))
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    damaged = sorted({Path(p.path).name for p in before.problems if p.part == "shard"})
    kept = [s for s in manifest["shards"] if s not in damaged]
    if damaged and not allow_drop:
        rows = read_evidence(store, damaged)
        held = ", ".join(f"{name} ({rows[name].rows} images)" if name in rows else f"{name} (unreadable)"
                         for name in damaged)
        raise RepairWouldDropError(
            f"repairing {index_dir} would drop {len(damaged)} damaged shard(s) of {len(manifest['shards'])}: "
            f"{held}; nothing was changed. Restore them from a backup, or run 'imgsearch verify --index "
            f"{index_dir} --repair --allow-drop' to publish the index without them (then 'imgsearch index' "
            "their folders to embed those images again)")
    if any(p.part == "copies" for p in before.problems):  # recorded again by the next 'imgsearch index'
        manifest = dict(manifest, copies=None)
    log.warning("repairing %s: rebuilding the FAISS index%s", index_dir,
                f", dropping damaged shards {', '.join(damaged)}" if damaged else "")
    published = publish_index(store, manifest, kept, retired=damaged, rebuild=True)
    dropped = manifest["count"] - published["count"]
    return RepairResult(before, verify_index(index_dir), damaged, dropped)
