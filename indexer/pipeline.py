"""The indexing run: read -> embed -> write shards -> build FAISS -> publish.

Each stage is a plain function or small class that can be tested alone;
``index_images`` wires them together.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .config import IndexConfig
from .images import DecodedImage, ImageDecodeError, decode_image
from .sources import ImageFile, iter_image_files
from .store import EmbeddingStore, IndexFormatError, Row, embeddings_of, library_versions

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- stage 1: read


@dataclass
class Decoded:
    file: ImageFile
    sha256: str
    image: DecodedImage


@dataclass
class Skipped:
    file: ImageFile
    reason: str


@dataclass
class AlreadyIndexed:
    file: ImageFile
    sha256: str


def read_one(file: ImageFile, size: int, known: set[str] | frozenset = frozenset()):
    """Read, hash and decode one file; never raises for a bad file."""
    try:
        with open(file.path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return Skipped(file, f"cannot read file: {exc.strerror or exc}")
    sha = hashlib.sha256(data).hexdigest()
    if sha in known:
        return AlreadyIndexed(file, sha)
    try:
        return Decoded(file, sha, decode_image(data, size))
    except ImageDecodeError as exc:
        return Skipped(file, str(exc))
    except Exception as exc:  # a decoder bug on one file must not end the run
        return Skipped(file, f"unexpected decoder error: {type(exc).__name__}: {exc}")


def read_images(files: Iterable[ImageFile], size: int, known: set[str] | frozenset = frozenset(),
                workers: int = 2, window: int = 128) -> Iterator[Decoded | Skipped | AlreadyIndexed]:
    """Decode files in worker threads, ``window`` ahead of the consumer, in input order."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        for file in files:
            pending.append(pool.submit(read_one, file, size, known))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# ---------------------------------------------------------------- stage 2: embed


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


# ---------------------------------------------------------------- stage 3: write


class ShardWriter:
    """Buffers rows and writes a Parquet shard every ``shard_size`` rows."""

    def __init__(self, store: EmbeddingStore, dim: int, shard_size: int):
        self.store, self.dim, self.shard_size = store, dim, shard_size
        self.buffer: list[Row] = []
        self.written: list[str] = []

    def add(self, row: Row) -> None:
        self.buffer.append(row)
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.written.append(self.store.write_shard(self.buffer, self.dim))
            self.buffer = []


# ---------------------------------------------------------------- the run


@dataclass
class IndexSummary:
    index_dir: str
    found: int = 0  # image files found under the sources
    added: int = 0  # newly embedded and indexed
    already_indexed: int = 0  # same content (sha256) already in the index
    duplicates: int = 0  # same content as another file of this run
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    total: int = 0  # images in the index after the run
    seconds: float = 0.0

    def lines(self) -> list[str]:
        rate = self.added / self.seconds if self.seconds else 0.0
        out = [
            f"indexed {self.added} new images in {self.seconds:.1f}s ({rate:.1f} img/s); "
            f"{self.already_indexed} already indexed, {self.duplicates} duplicates, "
            f"{len(self.skipped)} skipped; {self.total} images in {self.index_dir}"
        ]
        if self.skipped:
            out.append(f"skipped files (also in {Path(self.index_dir) / 'skipped.log'}):")
            out += [f"  {path}: {reason}" for path, reason in self.skipped[:20]]
            if len(self.skipped) > 20:
                out.append(f"  ... and {len(self.skipped) - 20} more")
        return out


def check_compatible(manifest: dict, backbone_name: str, dim: int, where: str) -> None:
    """Raise if an index folder was built with another backbone or dimension."""
    if manifest["backbone"]["name"] != backbone_name or manifest["dim"] != dim:
        raise IndexFormatError(
            f"{where} was built with backbone {manifest['backbone']['name']} "
            f"(dimension {manifest['dim']}), not {backbone_name} (dimension {dim}); "
            f"use --backbone {manifest['backbone']['name']} or another --index folder"
        )


def index_images(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike,
                 config: IndexConfig = IndexConfig()) -> IndexSummary:
    """Index the images under ``sources`` into ``index_dir`` (created or extended)."""
    from tqdm.auto import tqdm

    from .backbones import load_backbone
    from .embedder import Embedder

    started = time.perf_counter()
    files = list(iter_image_files(sources))  # fails early on a missing source
    store = EmbeddingStore(index_dir)
    summary = IndexSummary(str(index_dir), found=len(files))
    backbone = load_backbone(config.backbone, config.weights, config.cache_dir)
    if store.exists():
        manifest = store.read_manifest()
        check_compatible(manifest, backbone.name, backbone.dim, str(index_dir))
    else:
        # Publishing an empty index first pins the folder to this backbone.
        manifest = {"backbone": backbone.describe(), "dim": backbone.dim, "metric": "cosine",
                    "count": 0, "shards": [], "index_file": None, "generation": 0,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": library_versions()}
        store.root.mkdir(parents=True, exist_ok=True)
        store.publish(manifest)

    shards = store.completed_shards()  # includes shards an interrupted run completed
    existing = store.read_table(shards, ["id", "sha256"])
    known = set(existing.column("sha256").to_pylist())
    next_id = int(max(existing.column("id").to_pylist(), default=-1)) + 1

    embedder = Embedder(backbone, config.batch_size)
    writer = ShardWriter(store, backbone.dim, config.shard_size)
    seen_this_run: set[str] = set()
    bar = tqdm(total=len(files), unit="img", desc="indexing", disable=not config.progress, smoothing=0.1)

    def to_embed() -> Iterator[Decoded]:
        for item in read_images(files, backbone.input_size, frozenset(known)):
            if isinstance(item, Decoded) and item.sha256 not in seen_this_run:
                seen_this_run.add(item.sha256)
                yield item
                continue
            if isinstance(item, Skipped):
                summary.skipped.append((item.file.path, item.reason))
                store.log_skipped([f"{item.file.path}\t{item.reason}"])
                bar.set_postfix(skipped=len(summary.skipped), refresh=False)
            elif isinstance(item, AlreadyIndexed):
                summary.already_indexed += 1
            else:
                summary.duplicates += 1
            bar.update(1)

    try:
        for item, vector in embed_batches(to_embed(), embedder.embed, config.batch_size):
            writer.add(Row(next_id, item.file.path, item.file.label, item.image.width,
                           item.image.height, item.sha256, vector))
            next_id += 1
            summary.added += 1
            bar.update(1)
        writer.flush()
    finally:
        bar.close()

    all_shards = store.completed_shards()
    if all_shards != manifest["shards"]:
        manifest = publish_index(store, manifest, all_shards)
    summary.total = manifest["count"]
    summary.seconds = time.perf_counter() - started
    return summary


def publish_index(store: EmbeddingStore, manifest: dict, shards: list[str]) -> dict:
    """Build the FAISS index (and every head's) over ``shards``, then switch the manifest to them."""
    from .faiss_index import build_flat_index
    from .heads import build_head_index, list_heads, load_head
    from .whitening import search_space

    table = store.read_table(shards, ["id", "embedding"])
    ids = table.column("id").to_numpy()  # (n,)
    if len(np.unique(ids)) != len(ids):
        raise IndexFormatError(f"duplicate ids in the shards of {store.root}: the index is damaged")
    vectors = search_space(embeddings_of(table), store.root, manifest)  # (n, d)
    index = build_flat_index(ids, vectors)
    generation = manifest.get("generation", 0) + 1
    index_file = store.write_index(index, generation)
    manifest = dict(manifest, shards=shards, count=len(ids), index_file=index_file, generation=generation,
                    search_dim=int(vectors.shape[1]), index_type="Flat", versions=library_versions())
    for name in list_heads(store.root):  # head-aware search indexes follow the main one
        build_head_index(store.root, load_head(store.root, name, manifest), manifest)
    store.publish(manifest)
    store.remove_stale(keep={index_file})
    return manifest
