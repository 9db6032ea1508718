"""The one indexing run: list -> open the folder -> a stage embeds and writes the shards -> publish.

One skeleton (``run_index``) for every engine: local processes and an ``Embedder``
(``pipeline.LocalStage``), vectors made elsewhere (``index_vectors.VectorStage``), and Spark
(``indexer/spark``: ``images.SparkStage``, ``vectors.SparkVectorStage``).  It takes the folder's writer
lock, opens the index (``open_index``), hands the stage an ``IndexRun``, and publishes what the stage
wrote (``finish_index``), so every engine locks, opens, resumes and publishes alike.

The stage interface (``EmbedStage``):

- ``summary_type``: the ``IndexSummary`` class the run counts into;
- ``uses_ledger``: whether the run gives the stage the driver's ``Ledger`` (``run.ledger``);
- ``begin(index_dir, config)``: before the folder is opened (a Spark stage discards the shards a
  killed run wrote and never published, as its resume record lists them);
- ``prepare(run)``: everything before writing (load the model, run a Spark job);
- ``write(run) -> Written``: the run's new shards, the ids leaving the index, the exact copies;
- ``runtime``: what embedded, for the manifest (read after ``write``);
- ``done()``: after the publish (a stage deletes its staged work);
- optional ``fill``: who fills an on-disk index's partial indexes (``publish.ondisk.Fill``,
  e.g. Spark executors); a stage without one publishes as a local run does.

The local stages write through ``OutcomeStage``: they report every listed file, in listing order, as
``Outcomes`` (per-file records, content hash or why the file was not read, with the rows of the files
embedded); the run admits each through the ``Ledger`` (ids, duplicates, changed and skipped files) and
one ``ShardWriter`` writes the shards.  Such a stage must embed every file whose content is new to the
index and to the run so far; it may leave out (``embedded=False``) one it knows the index holds, or that
repeats an earlier file of the run.  The Spark stages decide ids by the ledger's rules as DataFrame steps
(``indexer/spark/ids.py``) and their executors write the shards; both give the same index.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

import numpy as np
import pyarrow as pa

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.copies import Copies, write_copies
from imgsearch.indexer.folder.evidence import embedder_fingerprint
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.features import update_features
from imgsearch.indexer.folder.manifest import check_compatible, check_precision_compatible, recorded_model_spec
from imgsearch.indexer.folder.store import FILE_COLUMNS, EmbeddingStore, schema
from imgsearch.indexer.folder.texts import text_array
from imgsearch.indexer.folder.versions import library_versions
from imgsearch.indexer.inputs.metadata import FileInfo
from imgsearch.indexer.inputs.outputs import OutputFilter
from imgsearch.indexer.inputs.sources import ImageFile, iter_image_files
from imgsearch.indexer.model.onnx_encoder import onnx_name
from imgsearch.indexer.publish.compact import compact_shards
from imgsearch.indexer.publish.ondisk import Fill
from imgsearch.indexer.publish.version import options_changed, publish_index, resolve_options
from imgsearch.indexer.run.ledger import Ledger
from imgsearch.indexer.run.refresh import rewrite_file_columns
from imgsearch.indexer.run.summary import IndexSummary
from imgsearch.indexer.run.writer import ShardWriter

if TYPE_CHECKING:
    from imgsearch.indexer.model.backbones import Backbone

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a stage made of one listed file."""

    file: ImageFile
    sha256: str | None = None  # None: not read or not decoded, ``reason`` says why
    reason: str = ""
    embedded: bool = False  # its row is in ``Outcomes.rows``
    info: FileInfo | None = None  # a known file's metadata captured again (``refresh_metadata``)


@dataclass(frozen=True)
class Outcomes:
    """Consecutive listed files, in listing order, and the rows of those embedded.

    ``rows``: one row per embedded outcome, in their order, with (at least)
    the shard columns but the id (``embedded_schema``; a Spark task's staged
    rows carry more, which are left out); paths and labels as stored
    (``texts.text_array``).
    """

    outcomes: Sequence[Outcome]
    rows: pa.Table | None = None
    features: Sequence | None = None  # per row: its ``LocalFeatures`` (None: not computed), or None for none


def embedded_schema(dim: int) -> pa.Schema:
    """The shard schema without the id: what a stage hands back for its embedded files."""
    return pa.schema([f for f in schema(dim) if f.name != "id"])


def embedded_rows(files: Sequence[ImageFile], sha256s: Sequence[str], sizes: Sequence[tuple[int, int]],
                  vectors: np.ndarray, dim: int, infos: Sequence[FileInfo | None] | None = None) -> pa.Table:
    """``Outcomes.rows`` from per-file values; ``vectors`` (n, D) float32; ``infos``: each file's metadata
    (None: unknown, null)."""
    vectors = np.ascontiguousarray(vectors, np.float32).reshape(-1, dim)  # (n, D)
    infos = list(infos) if infos is not None else [None] * len(files)
    return pa.table({
        "path": text_array(f.path for f in files), "label": text_array(f.label for f in files),
        "width": [w for w, _ in sizes], "height": [h for _, h in sizes], "sha256": list(sha256s),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
        **{name: [getattr(i, name, None) for i in infos] for name in FILE_COLUMNS},
    }, schema=embedded_schema(dim))


def with_ids(rows: pa.Table, take: Sequence[int], ids: Sequence[int], dim: int) -> pa.Table:
    """Rows ``take`` of ``rows`` with their ``ids``, in the shard schema."""
    picked = rows.take(pa.array(take, pa.int64())) if len(take) != rows.num_rows else rows
    target = schema(dim)
    # staged rows of an earlier release lack FILE_COLUMNS: null
    arrays = [pa.array(ids, pa.int64())] + [picked.column(name).combine_chunks().cast(target.field(name).type)
                                            if name in picked.column_names
                                            else pa.nulls(picked.num_rows, target.field(name).type)
                                            for name in target.names[1:]]
    return pa.Table.from_arrays(arrays, schema=target)


@dataclass
class IndexRun:
    """What a stage gets to prepare with: the run's listing and the index as it stands."""

    files: list[ImageFile]  # the one listing of the run, in its order
    index_dir: str
    store: EmbeddingStore
    manifest: dict  # as published before this run
    backbone: "Backbone"
    ledger: Ledger | None  # read-only to a stage; None on Spark, whose ids are decided by Spark (``ids``)
    summary: IndexSummary
    config: IndexConfig
    started: float  # time.perf_counter() at the start of the run
    shards: list[str] = field(default_factory=list)  # the published shards, and those a killed run completed
    sync: bool = False  # indexed files not in ``files`` leave the index


@dataclass
class Written:
    """What a stage's ``write`` leaves to publish."""

    new: list[str]  # the shards this run wrote, in order
    remove_ids: set[int]  # rows leaving the index: replaced by a re-embedded version, or files gone (sync)
    copies: Copies | None = None  # the exact copies after the run (None: as recorded)
    shards: list[str] | None = None  # the published shards to keep, when the stage replaced some (None: run.shards)
    refreshed: Sequence[str] = ()  # shards replaced by ``shards`` with new file metadata only
    features: list = field(default_factory=list)  # (id, sha256, LocalFeatures) of the rows written


class EmbedStage(Protocol):
    summary_type: type[IndexSummary]
    uses_ledger: bool

    def begin(self, index_dir: str | os.PathLike, config: IndexConfig) -> None: ...

    def prepare(self, run: IndexRun) -> None: ...

    def write(self, run: IndexRun) -> Written: ...

    @property
    def runtime(self) -> str: ...

    def done(self) -> None: ...


class OutcomeStage:
    """The write step of the stages that hand the driver every file's ``Outcome``: the ``Ledger`` admits
    them in listing order, one ``ShardWriter`` writes the rows it gives ids."""

    uses_ledger = True

    def begin(self, index_dir, config: IndexConfig) -> None:
        pass  # a local run resumes from the shards a killed run completed (``open_index`` adopts them)

    def outcomes(self) -> Iterator[Outcomes]:
        raise NotImplementedError

    def write(self, run: IndexRun) -> Written:
        from tqdm.auto import tqdm

        ledger, summary, dim, config = run.ledger, run.summary, run.backbone.dim, run.config
        writer = ShardWriter(run.store, dim, config.shard_size)
        refreshed: dict = {}  # id -> FileInfo of indexed files whose metadata the stage captured again
        features: list = []  # (id, sha256, LocalFeatures) of the rows written
        bar = tqdm(total=len(run.files), unit="img", desc="indexing", disable=not config.progress, smoothing=0.1)
        try:
            for batch in self.outcomes():
                admit(batch, ledger, writer, summary, dim, run.started, refreshed, features)
                bar.update(len(batch.outcomes))
                if summary.skipped:
                    bar.set_postfix(skipped=len(summary.skipped), refresh=False)
        finally:
            bar.close()
            writer.close()  # on Ctrl-C too: what was embedded is written, and the next run resumes after it
        shards, replaced = run.shards, []
        if refreshed:  # rows replaced or removed by this run keep what they had
            refreshed = {i: info for i, info in refreshed.items() if i not in ledger.remove_ids}
            shards, replaced = rewrite_file_columns(run.store, run.shards, refreshed, dim)
            summary.refreshed = len(refreshed)
        return Written(writer.written, ledger.remove_ids, ledger.final_copies(), shards, replaced, features)


def run_index(sources: Sequence[str | os.PathLike], index_dir: str | os.PathLike, config: IndexConfig,
              stage: EmbedStage, *, sync: bool = False, wait: bool = True,
              files: list[ImageFile] | None = None, backbone=None) -> IndexSummary:
    """Index the images under ``sources`` into ``index_dir``, embedded by ``stage``; see ``index_images``.

    The run holds the folder's writer lock from its start-up clean-up to its
    publish (``wait=False``: IndexLockedError at once if another writer has it).
    ``files`` and ``backbone``: the listing and the model when they come from elsewhere than ``sources``
    and the config (vectors made by another model: ``index_vectors``).
    """
    from imgsearch.indexer.run.placement import index_placement

    started = time.perf_counter()
    notes = index_placement(sources, index_dir)  # an index folder that is a source, or holds one: refused
    # the run's one listing (nothing is read yet): fails early on a missing source, sizes the progress
    # bar, and with sync tells which indexed files are gone
    outputs = OutputFilter([index_dir])  # what imgsearch wrote is never listed, the run's own folder first
    files = list(iter_image_files(sources, outputs)) if files is None else files
    for path, reason in outputs.left_out:
        log.warning("left out %s: %s", path, reason)
    with writer_lock(index_dir, wait=wait, create=True):
        summary = _run_locked(files, index_dir, config, stage, sync, started, backbone, outputs.left_out)
    summary.notes.extend(notes)
    return summary


def _run_locked(files: list[ImageFile], index_dir: str | os.PathLike, config: IndexConfig, stage: EmbedStage,
                sync: bool, started: float, backbone=None, left_out=()) -> IndexSummary:
    from imgsearch.indexer.model.backbones import load_backbone

    summary = stage.summary_type(str(index_dir), found=len(files))
    summary.skipped.extend(left_out)  # shown with the run's skipped files: what imgsearch wrote
    backbone = backbone or load_backbone(config.backbone, config.weights, config.cache_dir,
                                         model_spec(index_dir, config))
    stage.begin(index_dir, config)
    store, manifest, shards = open_index(index_dir, backbone, config.precision, config.runtime,
                                         config.cache_dir)
    ledger = Ledger(store, manifest, shards, summary, {f.path for f in files} if sync else None) \
        if stage.uses_ledger else None
    run = IndexRun(files, str(index_dir), store, manifest, backbone, ledger, summary, config, started, shards, sync)
    stage.prepare(run)
    written = stage.write(run)
    manifest = finish_index(store, manifest, shards if written.shards is None else written.shards, written.new,
                            written.remove_ids, stage.runtime, config, copies=written.copies,
                            refreshed=written.refreshed, fill=getattr(stage, "fill", None))
    # the verifier's features of the new rows (a re-embedded image's replaced), removed images' dropped
    update_features(store.root, written.features, written.remove_ids)
    stage.done()
    summary.total = manifest["count"]
    summary.seconds = time.perf_counter() - started
    return summary


def admit(batch: Outcomes, ledger: Ledger, writer: ShardWriter, summary: IndexSummary, dim: int,
          started: float, refreshed: dict | None = None, features: list | None = None) -> None:
    """Admit a batch's files through the ledger, in order; the rows it gives ids go to the writer.
    ``refreshed``: collects id -> metadata of indexed files the stage captured again; ``features``:
    (id, sha256, LocalFeatures) of the rows given ids whose features the stage computed."""
    take: list[int] = []  # rows of batch.rows that become index rows
    ids: list[int] = []
    row = 0
    for outcome in batch.outcomes:
        indexed = ledger.by_path.get(outcome.file.path)
        if outcome.info is not None and refreshed is not None and indexed and indexed[1] == outcome.sha256:
            refreshed[indexed[0]] = outcome.info
        row_id = ledger.admit(outcome.file, outcome.sha256, outcome.reason)
        if outcome.embedded:
            if row_id is not None:
                take.append(row)
                ids.append(row_id)
                if features is not None and batch.features is not None and batch.features[row] is not None:
                    features.append((row_id, outcome.sha256, batch.features[row]))
            row += 1
        elif row_id is not None:
            raise RuntimeError(f"the embedding stage did not embed {outcome.file.path}, whose content "
                               "is new to the index: a bug in the stage")
    if take:
        if not summary.startup_seconds:
            summary.startup_seconds = time.perf_counter() - started
        writer.add_table(with_ids(batch.rows, take, ids, dim))
        summary.added += len(take)


def open_index(index_dir: str | os.PathLike, backbone, precision: str | None = None,
               runtime: str = "auto", cache_dir=None) -> tuple[EmbeddingStore, dict, list[str]]:
    """The index folder ready for a run: (store, manifest, shards).

    A new folder is published empty first, which pins it to ``backbone`` and
    ``precision`` (None: ``runtime.default_precision``: int8 for efficientnet-lite where it measured
    faster on this CPU, else float32; the manifest's ``backbone.precision_reason`` says why), with the int8 calibration set's
    identity; an existing one must have been built with them (None: its own).  What a killed run was writing
    is deleted, and the shards it completed are adopted.
    """
    store = EmbeddingStore(index_dir)
    if store.exists():
        manifest = store.read_manifest()
        check_compatible(manifest, backbone.name, backbone.dim, str(index_dir), getattr(backbone, "extra", None))
        check_precision_compatible(manifest, precision, str(index_dir))
    else:
        from imgsearch.indexer.inputs.calibration import CALIBRATION
        from imgsearch.indexer.model.runtime import default_precision

        reason = f"{precision}: asked for" if precision else None
        if precision is None:
            precision, reason = default_precision(backbone, runtime, cache_dir, CALIBRATION)
        described = describe_model(backbone, precision)
        if not getattr(backbone, "external", False):
            described["precision_reason"] = reason  # why this precision: asked for, or measured here
        manifest = {"backbone": described, "dim": backbone.dim, "metric": "cosine",
                    "count": 0, "shards": [], "index_file": None, "generation": 0,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": library_versions()}
        store.root.mkdir(parents=True, exist_ok=True)
        store.publish(manifest)
    store.remove_temp_files()  # what a killed run was writing
    store.fingerprint = embedder_fingerprint(manifest)  # each shard records the model that made it
    shards = store.recover_shards(manifest)  # adds shards an interrupted run completed
    return store, manifest, shards


def model_spec(index_dir, config: IndexConfig):
    """The spec to open an ONNX backbone with: the config's, else the index's own (a later run embeds as the
    first did, whatever file sits beside the model now); None for a new index without one (the file beside)."""
    if config.model_spec is not None or not config.backbone.startswith("onnx:"):
        return config.model_spec
    store = EmbeddingStore(index_dir)
    return recorded_model_spec(store.read_manifest(), onnx_name(config.backbone)) if store.exists() else None


def describe_model(backbone, precision: str) -> dict:
    """The manifest's record of the model: the backbone, its precision, the resize filter of a new index
    and, for int8, the calibration set."""
    from imgsearch.indexer.inputs.images import DEFAULT_RESAMPLE

    if getattr(backbone, "external", False):  # vectors made elsewhere: no images to resize, no precision to pick
        return backbone.describe()
    described = dict(backbone.describe(), precision=precision, resample=DEFAULT_RESAMPLE,
                     resize=f"shorter side to input_size ({DEFAULT_RESAMPLE}), centre crop")
    if precision == "int8":
        from imgsearch.indexer.inputs.calibration import CALIBRATION
        from imgsearch.indexer.model.runtime import check_int8_backbone

        check_int8_backbone(backbone.name)  # before the folder is pinned to a model it cannot have

        described["calibration"] = CALIBRATION.identity()
    return described


def finish_index(store: EmbeddingStore, manifest: dict, shards: list[str], written: list[str],
                 remove_ids: set[int], runtime: str, config: IndexConfig | None = None,
                 copies: Copies | None = None, refreshed: Sequence[str] = (), fill: Fill | None = None) -> dict:
    """Publish ``shards`` plus the ``written`` ones, without the rows of ``remove_ids``; returns the manifest.

    The FAISS index is built as ``config`` says (index type, memory budget, recall), or as last time.
    ``copies``: the exact copies after the run (None: as recorded); a run that changes only them
    publishes them without touching the FAISS index (the version keeps its generation).
    ``refreshed``: shards replaced by ``shards`` with new file metadata only (same ids and embeddings):
    published without touching the FAISS index either.
    ``fill``: who fills an on-disk index's partial indexes (``publish.ondisk.Fill``); None: this process.
    """
    record = manifest.get("copies")
    if copies is not None and copies.changed:
        record = write_copies(store.root, copies)
    # rows replaced by a re-embedded version, or whose files are gone, leave their shards
    kept, retired = store.rewrite_without(shards, remove_ids) if remove_ids else (shards, [])
    retired = list(retired) + list(refreshed)
    all_shards = kept + written
    if written or refreshed:  # shards in the schema of format 4: earlier releases must refuse the folder
        manifest = dict(manifest, file_columns=list(FILE_COLUMNS))
    options = resolve_options(manifest, config.ann_overrides() if config else None)
    if refreshed and not written and not remove_ids and not options_changed(manifest, options):
        manifest = store.publish(dict(manifest, shards=all_shards, copies=record), retired=retired)
    elif all_shards != manifest["shards"] or options_changed(manifest, options):
        manifest = publish_index(store, dict(manifest, runtime=runtime, copies=record), all_shards, retired,
                                 options=options, fill=fill)
        if config is not None:  # each incremental run adds a small shard: merge them once there are many
            manifest = compact_shards(store, manifest, config.shard_size)
    elif record != manifest.get("copies"):
        manifest = store.publish(dict(manifest, copies=record))
    return manifest
