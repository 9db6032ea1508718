"""The local indexing engine: decoding worker processes and an ``Embedder``, as a stage of the one run.

``index_images`` runs ``indexing.run_index`` with a ``LocalStage``: files are
read, hashed and decoded in worker processes (``reader.read_images``),
embedded in batches on this machine, and handed to the run in listing order.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import ExecutionError
from imgsearch.indexer.folder.manifest import model_precision, resample
from imgsearch.indexer.inputs.reader import (
    AlreadyIndexed,
    Decoded,
    Skipped,
    read_images,
    read_one,
)
from imgsearch.indexer.run.indexing import IndexRun, Outcome, OutcomeStage, Outcomes, embedded_rows, run_index
from imgsearch.indexer.run.summary import IndexSummary

log = logging.getLogger(__name__)

MAX_PENDING = 4096  # files reported at most per batch: embedded early rather than held back longer


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


class LocalStage(OutcomeStage):
    """Embeds on this machine: ``decode_workers`` processes decode, one ``Embedder`` embeds in batches.

    A file whose content the index holds is hashed but not decoded (its
    64-bit key is known to the workers; on a key collision it is decoded
    here after all); a file repeating an earlier file of the run is not embedded again.
    """

    summary_type = IndexSummary

    def __init__(self, config: IndexConfig, refresh_metadata: bool = False):
        self.config = config
        self.refresh_metadata = refresh_metadata  # capture known files' metadata too (``Outcome.info``)
        self.run: IndexRun | None = None
        self.embedder = None

    def prepare(self, run: IndexRun) -> None:
        from imgsearch.indexer.model.embedder import Embedder

        self.run = run
        self.embedder = Embedder(run.backbone, self.config.batch_size, self.config.runtime, self.config.cache_dir,
                                 **model_precision(run.manifest))

    @property
    def runtime(self) -> str:
        return self.embedder.runtime

    def done(self) -> None:
        pass

    def outcomes(self) -> Iterator[Outcomes]:
        try:
            yield from self._outcomes()
        except BrokenProcessPool as exc:
            raise ExecutionError(
                "a decoding worker process died. From a Python script, call index_images() under "
                "`if __name__ == \"__main__\":` (worker processes re-import the main module), or pass "
                "IndexConfig(decode_workers=0) to decode in a thread"
            ) from exc

    def _outcomes(self) -> Iterator[Outcomes]:
        run, config = self.run, self.config
        size, dim = run.backbone.input_size, run.backbone.dim
        filter_ = resample(run.manifest)  # the index's, as for its queries
        pending: list[Outcome] = []  # every file since the last batch, in order
        batch: list[Decoded] = []  # those of them to embed
        seen: set[str] = set()  # contents this stage embeds: a repeat is not embedded again

        def flush() -> Outcomes:
            vectors = self.embedder.embed(np.stack([d.image.array for d in batch]))  # (b, D)
            rows = embedded_rows([d.file for d in batch], [d.sha256 for d in batch],
                                 [(d.image.width, d.image.height) for d in batch], vectors, dim,
                                 [d.info for d in batch])
            out = Outcomes(list(pending), rows, [d.features for d in batch])
            pending.clear()
            batch.clear()
            return out

        for item in read_images(run.files, size, run.ledger.known_keys(), workers=config.decode_workers,
                                max_pixels=config.max_pixels, resample=filter_,
                                refresh_metadata=self.refresh_metadata, features=config.local_features):
            if isinstance(item, AlreadyIndexed) and not run.ledger.is_known(item.sha256):
                # only its 64-bit key was known
                item = read_one(item.file, size, max_pixels=config.max_pixels, resample=filter_,
                                refresh_metadata=self.refresh_metadata, features=config.local_features)
            if isinstance(item, Skipped):
                pending.append(Outcome(item.file, None, item.reason))
            elif isinstance(item, Decoded) and item.sha256 not in seen:
                seen.add(item.sha256)
                pending.append(Outcome(item.file, item.sha256, embedded=True))
                batch.append(item)
                if len(batch) == config.batch_size:
                    yield flush()
            else:  # indexed, or a repeat of this run
                pending.append(Outcome(item.file, item.sha256, info=getattr(item, "info", None)
                                       if self.refresh_metadata else None))
            if not batch:  # nothing waits for the model: report at once
                yield Outcomes(list(pending))
                pending.clear()
            elif len(pending) >= MAX_PENDING:  # new files are rare among known ones: bound what waits
                yield flush()
        if batch:
            yield flush()


def index_images(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike,
                 config: IndexConfig | None = None, *, sync: bool = False, wait: bool = True,
                 refresh_metadata: bool = False) -> IndexSummary:
    """Index the images under ``sources`` into ``index_dir`` (created or extended).

    New files are added; a file whose content changed since it was indexed is
    re-embedded and keeps its id.  With ``sync``, indexed images whose files
    are no longer under ``sources`` are removed.  ``wait=False``: fail with
    IndexLockedError at once if another writer is writing the folder.  New files' metadata (size,
    times, camera) is captured; ``refresh_metadata``: indexed files' too (``indexer/run/refresh.py``).
    """
    config = config or IndexConfig()
    return run_index(sources, index_dir, config, LocalStage(config, refresh_metadata), sync=sync, wait=wait)
