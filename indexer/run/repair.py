"""``repair_index(DIR)``: rebuild the FAISS index and the heads' search indexes from the intact
shards, and drop damaged shards from the index (their images are then indexed again by the
next ``imgsearch index``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

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


def repair_index(index_dir, *, wait: bool = True) -> RepairResult:
    """Republish the index from its intact shards: a new FAISS index and head indexes, damaged shards left out.

    Raises IndexFormatError if the damage cannot be repaired this way (manifest,
    whitening, a head's own files, duplicate ids).  Holds the folder's writer
    lock, checking included (``wait=False``: IndexLockedError at once if another writer has it).
    """
    with writer_lock(index_dir, wait=wait):
        return _repair(index_dir)


def _repair(index_dir) -> RepairResult:
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
    if any(p.part == "copies" for p in before.problems):  # recorded again by the next 'imgsearch index'
        manifest = dict(manifest, copies=None)
    log.warning("repairing %s: rebuilding the FAISS index%s", index_dir,
                f", dropping damaged shards {', '.join(damaged)}" if damaged else "")
    published = publish_index(store, manifest, kept, retired=damaged, rebuild=True)
    dropped = manifest["count"] - published["count"]
    return RepairResult(before, verify_index(index_dir), damaged, dropped)
