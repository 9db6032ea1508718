"""The local indexing run: list -> ledger -> read -> embed -> write shards -> publish.

Each stage is a plain function or small class that can be tested alone;
``index_images`` wires them together.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from indexer.config import IndexConfig
from indexer.errors import ExecutionError
from indexer.folder.manifest import check_compatible
from indexer.folder.store import EmbeddingStore, Row, library_versions
from indexer.inputs.reader import (
    AlreadyIndexed,
    Decoded,
    Skipped,
    read_images,
    read_one,
)
from indexer.inputs.sources import count_image_files, iter_image_files
from indexer.publish.version import options_changed, publish_index, resolve_options
from indexer.run.ledger import Ledger
from indexer.run.summary import IndexSummary
from indexer.run.writer import ShardWriter

log = logging.getLogger(__name__)


def embed_batches(items: Iterable[Decoded], embed: Callable[[np.ndarray], np.ndarray],
                  batch_size: int) -> Iterator[tuple[Decoded, np.ndarray]]:
    """Group decoded images into batches, embed each batch, yield (item, vector)."""
    batch: list[Decoded] = []

    def flush():
        vectors = embed(np.stack([d.image.array for d in batch]))  # (b, D)
        yield from zip(batch, vectors)
        batch.clear()

    for item in items:
        batch.append(item)
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()


def index_images(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike,
                 config: IndexConfig = IndexConfig(), *, sync: bool = False) -> IndexSummary:
    """Index the images under ``sources`` into ``index_dir`` (created or extended).

    New files are added; a file whose content changed since it was indexed is
    re-embedded and keeps its id.  With ``sync``, indexed images whose files
    are no longer under ``sources`` are removed.
    """
    from tqdm.auto import tqdm

    from indexer.model.backbones import load_backbone
    from indexer.model.embedder import Embedder

    started = time.perf_counter()
    # one listing pass (nothing is read yet): fails early on a missing source, sizes the progress bar,
    # and with sync tells which indexed files are gone
    present = {f.path for f in iter_image_files(sources)} if sync else None
    total = len(present) if sync else count_image_files(sources)
    summary = IndexSummary(str(index_dir), found=total)
    backbone = load_backbone(config.backbone, config.weights, config.cache_dir)
    store, manifest, shards = open_index(index_dir, backbone)
    ledger = Ledger(store, manifest, shards, summary, present)

    embedder = Embedder(backbone, config.batch_size, config.runtime, config.cache_dir)
    writer = ShardWriter(store, backbone.dim, config.shard_size)
    bar = tqdm(total=total, unit="img", desc="indexing", disable=not config.progress, smoothing=0.1)

    ids: deque[int] = deque()  # the id of each item on its way through the batches, in order

    def to_embed() -> Iterator[Decoded]:
        for item in read_images(iter_image_files(sources), backbone.input_size, ledger.known_keys(),
                                workers=config.decode_workers, max_pixels=config.max_pixels):
            if isinstance(item, AlreadyIndexed) and not ledger.is_known(item.sha256):
                # only its 64-bit key was known
                item = read_one(item.file, backbone.input_size, max_pixels=config.max_pixels)
            if isinstance(item, Skipped):
                ledger.admit(item.file, None, item.reason)
                bar.set_postfix(skipped=len(summary.skipped), refresh=False)
            else:
                row_id = ledger.admit(item.file, item.sha256)
                if row_id is not None:  # a new content, so decoded: an indexed one is never decoded
                    ids.append(row_id)
                    yield item
                    continue
            bar.update(1)

    try:
        for item, vector in embed_batches(to_embed(), embedder.embed, config.batch_size):
            if not summary.added:
                summary.startup_seconds = time.perf_counter() - started
            writer.add(Row(ids.popleft(), item.file.path, item.file.label, item.image.width,
                           item.image.height, item.sha256, vector))
            summary.added += 1
            bar.update(1)
    except BrokenProcessPool as exc:
        raise ExecutionError(
            "a decoding worker process died. From a Python script, call index_images() under "
            "`if __name__ == \"__main__\":` (worker processes re-import the main module), or pass "
            "IndexConfig(decode_workers=0) to decode in a thread"
        ) from exc
    finally:
        bar.close()
        writer.close()  # on Ctrl-C too: what was embedded is written, and the next run resumes after it

    manifest = finish_index(store, manifest, shards, writer.written, ledger.remove_ids, embedder.runtime,
                            config)
    summary.total = manifest["count"]
    summary.seconds = time.perf_counter() - started
    return summary


def open_index(index_dir: str | os.PathLike, backbone) -> tuple[EmbeddingStore, dict, list[str]]:
    """The index folder ready for a run: (store, manifest, shards).

    A new folder is published empty first, which pins it to ``backbone``; an
    existing one must have been built with it.  What a killed run was writing
    is deleted, and the shards it completed are adopted.
    """
    store = EmbeddingStore(index_dir)
    if store.exists():
        manifest = store.read_manifest()
        check_compatible(manifest, backbone.name, backbone.dim, str(index_dir))
    else:
        manifest = {"backbone": backbone.describe(), "dim": backbone.dim, "metric": "cosine",
                    "count": 0, "shards": [], "index_file": None, "generation": 0,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": library_versions()}
        store.root.mkdir(parents=True, exist_ok=True)
        store.publish(manifest)
    store.remove_temp_files()  # what a killed run was writing
    shards = store.recover_shards(manifest)  # adds shards an interrupted run completed
    return store, manifest, shards


def finish_index(store: EmbeddingStore, manifest: dict, shards: list[str], written: list[str],
                 remove_ids: set[int], runtime: str, config: IndexConfig | None = None) -> dict:
    """Publish ``shards`` plus the ``written`` ones, without the rows of ``remove_ids``; returns the manifest.

    The FAISS index is built as ``config`` says (index type, memory budget, recall), or as last time.
    """
    # rows replaced by a re-embedded version, or whose files are gone, leave their shards
    kept, retired = store.rewrite_without(shards, remove_ids) if remove_ids else (shards, [])
    all_shards = kept + written
    options = resolve_options(manifest, config.ann_overrides() if config else None)
    if all_shards != manifest["shards"] or options_changed(manifest, options):
        manifest = publish_index(store, dict(manifest, runtime=runtime), all_shards, retired, options=options)
    return manifest
