"""What a Spark executor runs: read, hash, decode and embed one task's files, write its results.

A task is a run of consecutive listed files.  Its result file ("staged
task") holds one row per file, in listing order: content hash, size and
embedding of each decoded image, or why a file was not decoded (its content
is already indexed, or it is not a readable image).  Executors then turn
staged tasks into index shards (``shards``); a task whose result file
exists is not run again.

Runs inside PySpark's Python workers, called by ``mapInPandas`` with Arrow
batches of ``batch_size`` files.  The model is built once per worker process
and reused by every task that process runs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from imgsearch.indexer.atomic import atomic_write_bytes
from imgsearch.indexer.folder.store import FILE_COLUMNS
from imgsearch.indexer.folder.store import schema as shard_schema
from imgsearch.indexer.folder.texts import decode_text, encode_text, encode_texts
from imgsearch.indexer.inputs import filesystems
from imgsearch.indexer.inputs.reader import AlreadyIndexed, Decoded, Skipped, read_one
from imgsearch.indexer.inputs.sources import ImageFile
from imgsearch.indexer.model.onnx_encoder import file_stamp, is_onnx

log = logging.getLogger(__name__)

OK, KNOWN, SKIPPED = "ok", "known", "skipped"
# what the driver sends: one row per file; path and label as a shard stores them (``texts.encode_text``),
# so names of any bytes cross the JVM
INPUT_SCHEMA = "ordinal long, path string, label string, staged string"
# what each task returns to the driver: one row
RESULT_SCHEMA = ("staged string, files long, decoded long, known long, skipped long, "
                 "seconds double, model_seconds double, pid long, host string, runtime string, peak_rss_mb double")


def staged_schema(dim: int) -> pa.Schema:
    """A staged task: the shard columns (types and stored texts as in the index format) but the id, plus status."""
    shard = shard_schema(dim)
    return pa.schema([
        pa.field("ordinal", pa.int64(), nullable=False),  # position in the run's listing
        pa.field("path", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | known | skipped
        pa.field("reason", pa.string()),  # why it was skipped
        pa.field("sha256", pa.string()),  # null when skipped
        pa.field("width", shard.field("width").type),
        pa.field("height", shard.field("height").type),
        pa.field("embedding", shard.field("embedding").type),  # zeros unless ok (compress to nothing)
        *(shard.field(name) for name in FILE_COLUMNS),  # null unless ok
    ])


@dataclass(frozen=True)
class TaskSettings:
    """Everything an executor needs, pickled into each task's closure."""

    backbone: str
    weights: str | None
    runtime: str
    batch_size: int
    cache_dir: str  # the driver's model cache; executors use $IMGSEARCH_CACHE when it is set
    model_file: str | None  # the converted TFLite model's file name, shipped with SparkContext.addFile
    keys: object  # Broadcast of the sorted uint64 keys of indexed contents (reader.known_keys)
    precision: str = "float32"  # the index's (manifest.model_precision): executors embed as it was built
    resample: str = "bicubic"  # the index's resize filter (manifest.resample), likewise
    model_spec: dict | None = None  # an ONNX model's spec, as the manifest records it (manifest.recorded_model_spec)


_EMBEDDERS: dict = {}  # one model per Python worker process, kept across the tasks it runs


def clear_embedders() -> None:
    """Forget this process's embedders: the next task builds its own."""
    _EMBEDDERS.clear()


def _cache_dir(settings: TaskSettings) -> Path:
    """A cache folder holding the converted model, so no executor converts it again.

    $IMGSEARCH_CACHE (spark.executorEnv) or the driver's folder when it has the
    model (local mode, shared disk); otherwise the copy shipped with the job is
    put into that folder, or into Spark's work folder when it is not writable.
    """
    cache = Path(os.environ.get("IMGSEARCH_CACHE") or settings.cache_dir)
    if settings.model_file is None or (cache / "models" / settings.model_file).is_file():
        return cache
    from pyspark import SparkFiles

    shipped = Path(SparkFiles.get(settings.model_file))
    for folder in (cache, Path(SparkFiles.getRootDirectory()) / "imgsearch-cache"):
        try:
            (folder / "models").mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / "models" / settings.model_file, shipped.read_bytes())
            return folder
        except OSError as exc:
            log.warning("cannot cache the model in %s: %s", folder, exc)
    raise RuntimeError(f"no writable folder for the model cache on {os.uname().nodename}")


def process_embedder(settings: TaskSettings, threads: int):
    """The embedder of this worker process, built on first use."""
    # an ONNX model: its spec and its file's size and time too (a worker outlives a job; the next job's index
    # may have another spec, or the file other weights)
    onnx = (json.dumps(settings.model_spec, sort_keys=True), file_stamp(settings.backbone, settings.model_spec)) \
        if is_onnx(settings.backbone) else ()
    key = (settings.backbone, settings.weights, settings.runtime, settings.precision, threads, *onnx)
    if key not in _EMBEDDERS:
        from imgsearch.indexer.inputs.calibration import CALIBRATION
        from imgsearch.indexer.model.backbones import load_backbone
        from imgsearch.indexer.model.embedder import Embedder

        cache = _cache_dir(settings)
        backbone = load_backbone(settings.backbone, settings.weights, cache, settings.model_spec)
        _EMBEDDERS[key] = Embedder(backbone, settings.batch_size, settings.runtime, cache, threads=threads,
                                   precision=settings.precision,
                                   calibration=CALIBRATION if settings.precision == "int8" else None)
    return _EMBEDDERS[key]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far: VmHWM, its own address space's high-water mark.

    Not ``ru_maxrss``, which Linux keeps across fork and exec: a process started
    by one holding 400 MB would report 400 MB whatever it held itself.
    """
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024  # KiB
    except (OSError, StopIteration, ValueError):  # no procfs (macOS): the rusage figure
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _task_cpus() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, int(context.cpus())) if context is not None else 1


def _batch_rows(ordinals: np.ndarray, items: list, embedder) -> dict:
    """Columns of the staged rows for one batch: (b,) each, embedding (b, D)."""
    decoded = [i for i, item in enumerate(items) if isinstance(item, Decoded)]
    vectors = np.zeros((len(items), embedder.dim), np.float32)  # (b, D)
    if decoded:
        vectors[decoded] = embedder.embed(np.stack([items[i].image.array for i in decoded]))
    status = [OK if isinstance(i, Decoded) else KNOWN if isinstance(i, AlreadyIndexed) else SKIPPED for i in items]
    return {
        "ordinal": ordinals,
        "path": encode_texts(i.file.path for i in items),
        "label": encode_texts(i.file.label for i in items),
        "status": status,
        "reason": [encode_text(i.reason) if isinstance(i, Skipped) else None for i in items],  # may name a link
        "sha256": [getattr(i, "sha256", None) for i in items],
        "width": [i.image.width if isinstance(i, Decoded) else 0 for i in items],
        "height": [i.image.height if isinstance(i, Decoded) else 0 for i in items],
        "embedding": vectors,
        **{name: [getattr(i.info, name) if isinstance(i, Decoded) and i.info else None for i in items]
           for name in FILE_COLUMNS},
    }


def _to_table(parts: list[dict], dim: int, runtime: str) -> pa.Table:
    target = staged_schema(dim)
    columns = {}
    for name in target.names:
        if name == "embedding":
            emb = np.concatenate([p[name] for p in parts]) if parts else np.zeros((0, dim), np.float32)
            columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), dim)
        else:
            columns[name] = pa.array([v for p in parts for v in p[name]], target.field(name).type)
    return pa.table(columns, schema=target.with_metadata({"runtime": runtime}))


def embed_task(batches: Iterator, settings: TaskSettings) -> Iterator:
    """mapInPandas body: pandas batches of INPUT_SCHEMA rows (one task) -> one RESULT_SCHEMA row.

    Files are read and decoded by a thread pool one batch ahead of the model;
    a file that cannot be read or decoded is recorded as skipped, never raised.
    """
    import pandas as pd

    started = time.perf_counter()
    threads = _task_cpus()
    embedder = process_embedder(settings, threads)
    size = embedder.backbone.input_size
    keys = settings.keys.value
    parts, staged, model_seconds = [], None, 0.0

    def finish(pending) -> None:
        nonlocal model_seconds
        ordinals, futures = pending
        items = [f.result() for f in futures]
        t = time.perf_counter()
        parts.append(_batch_rows(ordinals, items, embedder))
        model_seconds += time.perf_counter() - t

    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        pending = None
        for frame in batches:
            staged = frame["staged"].iat[0]
            files = [ImageFile(decode_text(p), decode_text(label)) for p, label in zip(frame["path"], frame["label"])]
            submitted = (frame["ordinal"].to_numpy(np.int64), [pool.submit(read_one, f, size, keys, resample=settings.resample)
                                                          for f in files])
            if pending is not None:
                finish(pending)  # the model runs while the pool decodes the next batch
            pending = submitted
        if pending is not None:
            finish(pending)
    if staged is None:  # an empty partition: nothing to stage
        return
    table = _to_table(parts, embedder.dim, embedder.runtime)
    filesystems.write_parquet(table, staged, tmp_tag=f"{os.uname().nodename}-{os.getpid()}")
    status = table.column("status").to_pylist()
    yield pd.DataFrame({
        "staged": [staged], "files": [table.num_rows], "decoded": [status.count(OK)],
        "known": [status.count(KNOWN)], "skipped": [status.count(SKIPPED)],
        "seconds": [time.perf_counter() - started], "model_seconds": [model_seconds],
        "pid": [os.getpid()], "host": [os.uname().nodename], "runtime": [embedder.runtime],
        "peak_rss_mb": [peak_rss_mb()],
    })


def restage_task(staged: str, ordinals: list[int], settings: TaskSettings) -> int:
    """Read and embed again the rows ``ordinals`` of a staged task (staged as known, no longer indexed).

    The staged file is rewritten (atomically) with them as ok, or skipped when
    they can no longer be decoded; returns how many rows were read again.
    """
    import pyarrow.compute as pc

    table = filesystems.read_parquet(staged)
    embedder = process_embedder(settings, _task_cpus())
    rows = (np.asarray(ordinals, np.int64) - table.column("ordinal")[0].as_py()).tolist()
    paths, labels = table.column("path").to_pylist(), table.column("label").to_pylist()
    items = [read_one(ImageFile(decode_text(paths[i]), decode_text(labels[i])), embedder.backbone.input_size,
                      np.empty(0, np.uint64), resample=settings.resample) for i in rows]  # no key: none is known
    again = _to_table([_batch_rows(np.asarray(ordinals, np.int64), items, embedder)], embedder.dim, embedder.runtime)
    kept = table.filter(pc.invert(pc.is_in(table.column("ordinal"), value_set=pa.array(ordinals, pa.int64()))))
    merged = pa.concat_tables([kept, again.select(table.schema.names).cast(table.schema)]).sort_by("ordinal")
    filesystems.write_parquet(merged, staged, tmp_tag=f"{os.uname().nodename}-{os.getpid()}")
    return len(rows)
