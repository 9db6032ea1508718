"""Opening one published version of an index folder: checked before a query is answered from it."""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.evidence import check_claims
from imgsearch.indexer.folder.heads import HeadDamagedError
from imgsearch.indexer.folder.manifest import backbone_name, search_dim
from imgsearch.indexer.folder.store import EmbeddingStore, IndexFormatError
from imgsearch.indexer.folder.verify import check_published_files
from imgsearch.indexer.memory import release_unused_memory
from imgsearch.search.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass
class OpenedVersion:
    manifest: dict
    index: object  # the FAISS index, or None for an empty folder
    metadata: Catalog  # ids and labels of every row, paths read when asked for
    config: IndexConfig
    device: str  # where FAISS searches: "cpu" or "gpu"
    signature: tuple | None  # of the manifest file it was opened from
    files: dict  # relative path -> (inode, size, mtime_ns) of each file it uses, as opened (``version_health``)


def open_version(store: EmbeddingStore, backbone: str | None, config: IndexConfig | None) -> OpenedVersion:
    """The version published now (one attempt): IndexFormatError if anything in it is missing or inconsistent."""
    index_dir = store.root
    signature = store.manifest_signature()
    manifest = store.read_manifest()
    check_published_files(store, manifest)  # truncated or missing files: a clear error, before reading them
    files = file_stats(store, manifest)
    config = config or IndexConfig(backbone=backbone_name(manifest))
    if backbone is not None and backbone != backbone_name(manifest):
        raise IndexFormatError(
            f"{index_dir} was built with backbone {backbone_name(manifest)}, not {backbone}: "
            "query it with the backbone it was built with, or re-index with --backbone "
            f"{backbone} into another folder"
        )
    # the shards' ids and labels are read while the FAISS index loads (at ten million rows each takes seconds)
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(_read_metadata, store, manifest)
        index, device = None, "cpu"
        try:
            if manifest["index_file"] is not None:
                index, device = _load_index(store, manifest, config)
        finally:
            metadata = reading.result()  # a damaged shard is reported before a damaged index, as ever
    check_claims(store, manifest, metadata.ids)  # a manifest that lies about the data is refused, never believed
    if index is not None:
        space_dim = search_dim(manifest)
        if index.ntotal != manifest["count"] or index.d != space_dim:
            raise IndexFormatError(
                f"{index_dir}: FAISS index has {index.ntotal} vectors of dimension {index.d}, "
                f"manifest says {manifest['count']} of {space_dim}; the index is damaged: "
                f"'imgsearch verify --index {index_dir} --repair' rebuilds it"
            )
    release_unused_memory()  # what the reads freed: a served process would keep it for as long as it serves
    return OpenedVersion(manifest, index, metadata, config, device, signature, files)


def file_stats(store: EmbeddingStore, manifest: dict) -> dict:
    """(inode, size, mtime_ns) of each file a version uses, None for one missing: one stat each."""
    stats = {}
    for rel in store.published_files(manifest):
        try:
            st = os.stat(store.root / rel)
            stats[rel] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stats[rel] = None
    return stats


def version_health(engine) -> dict:
    """``{"status": "ok"}``, or ``{"status": "degraded", "reason": ..., "reasons": [...]}`` when the version
    an engine answers from is damaged: a shard a read found unreadable (queries reading it are refused, the
    others answered), or a file it uses changed or gone on disk since it was opened (published files never
    change: that is damage, even where nothing read it yet).  Costs one stat per file of the version."""
    shards = set(engine.manifest["shards"])
    reasons = [f"shard {name} is damaged (a read of it failed): queries that read it are refused until it is "
               "repaired with 'imgsearch verify --repair'" for name in sorted(engine.store.damaged) if name in shards]
    if engine.opened_files and not engine.changed():  # a publish replaces files on purpose: not damage
        now = file_stats(engine.store, engine.manifest)
        for rel, opened in sorted(engine.opened_files.items()):
            if now.get(rel) != opened and not any(rel == f"shards/{name}" for name in engine.store.damaged):
                what = "is gone" if now.get(rel) is None else "changed"
                reasons.append(f"{rel} {what} on disk since this version was opened (published files never "
                               "change): check the index with 'imgsearch verify'")
    if not reasons:
        return {"status": "ok"}
    return {"status": "degraded", "reason": "; ".join(reasons), "reasons": reasons}


def _read_metadata(store: EmbeddingStore, manifest: dict) -> Catalog:
    metadata = Catalog.read(store, manifest["shards"])  # ids and labels only: paths stay in the shards
    if len(metadata) != manifest["count"]:
        raise IndexFormatError(
            f"{store.root}: manifest says {manifest['count']} images but the shards hold "
            f"{len(metadata)}; the index is damaged, re-run 'imgsearch index'"
        )
    return metadata


def _load_index(store: EmbeddingStore, manifest: dict, config: IndexConfig):
    """The published FAISS index with its tuned search parameters, on GPU if there is one.

    An on-disk index (``ann.lists_file``) has its lists file mapped read-only
    and is searched on CPU (``to_gpu_if_available`` leaves it there).
    """
    from imgsearch.indexer.ann.choice import mmap_mode
    from imgsearch.indexer.ann.faiss_ops import set_search_params, to_gpu_if_available

    name = manifest["index_file"]
    ann = manifest.get("ann") or {}
    lists_file = ann.get("lists_file")
    if lists_file:  # on disk: its lists file mapped read-only, whatever the size
        mmap, index = "lists", store.read_index(name, lists_file=lists_file)
    else:
        mmap = mmap_mode(ann.get("factory", "Flat"), (store.root / name).stat().st_size)
        index = store.read_index(name, mmap=mmap)
    index, device = to_gpu_if_available(index, config.use_gpu)
    set_search_params(index, (ann.get("tuning") or {}).get("params") or {})  # on the copy that searches
    log.info("serving %s (%d vectors) on %s%s", manifest.get("index_type"), index.ntotal, device.upper(),
             f", {mmap} memory-mapped" if mmap else "")
    return index, device


def newest_if_gone(method):
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


OPEN_ATTEMPTS = 5  # opening races at most this many publishes in a row


def open_newest(store: EmbeddingStore, open_one, verify: bool = False):
    """``open_one()`` of the version published now, again if a newer one was published while it was being
    opened (its files then change or go); ``verify``: check every file's sha256 first."""
    for attempt in range(OPEN_ATTEMPTS):
        signature = store.manifest_signature()
        try:
            if verify:
                from imgsearch.indexer.folder.verify import verify_index

                verify_index(store.root).raise_if_damaged()
            return open_one()
        except IndexFormatError:
            # a file gone or changed because a newer version was published meanwhile: open that one
            if attempt + 1 == OPEN_ATTEMPTS or store.manifest_signature() == signature:
                raise
            log.info("%s was republished while it was being opened; opening the new version", store.root)


def version_info(engine) -> dict:
    """What ``imgsearch info`` and ``GET /api/info`` show of the version an engine answers from."""
    m = engine.manifest
    return {
        "index_dir": str(engine.store.root),
        "backbone": m["backbone"],
        "dim": m["dim"],
        "count": m["count"],
        "metric": m["metric"],
        "index_type": m.get("index_type"),
        "ann": m.get("ann") and dict(m["ann"], device=engine.device),
        "runtime": m.get("runtime"),
        "whitening": m.get("whitening"),
        "heads": engine.head_names(),
        "shards": len(m["shards"]),
        "generation": m.get("generation", 0),
        "created": m.get("created"),
        "updated": m.get("updated"),
        "versions": m.get("versions"),
    }
