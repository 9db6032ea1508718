"""The search package's commands: everything that reads an index folder.

Registered as ``imgsearch`` subcommands through the ``imgsearch.commands`` entry points
(pyproject.toml); the root group is ``web.cli.main``, which reports their errors.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click

from indexer.options import describe_ann, index_option


def _open_engine(index_dir):
    from search.engine import SearchEngine

    return SearchEngine.open(index_dir)


@click.command()
@index_option
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, 1000), help="Results per query.")
@click.option("--head", default=None, help="Head-aware search: blend in this head's class probabilities.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query.")
def search(index_dir, images, k, head, as_json):
    """Find the indexed images most similar to each IMAGE."""
    from indexer.inputs.images import ImageDecodeError
    from search.engine import display_text, hits_to_json

    engine = _open_engine(index_dir)
    if head is not None:
        engine.head(head)  # fail before embedding anything
    failed = False
    for image in images:
        try:
            hits = engine.search_image(image, k, head=head)
        except ImageDecodeError as exc:
            click.echo(f"{image}: {exc}", err=True)
            failed = True
            continue
        if as_json:  # paths as shown (valid UTF-8 whatever their bytes); the id names the image
            shown = [dataclasses.replace(h, path=display_text(h.path), label=display_text(h.label)) for h in hits]
            click.echo(json.dumps(hits_to_json(display_text(str(image)), shown)))
        else:
            click.echo(display_text(f"{image}:"))
            for rank, h in enumerate(hits, 1):
                click.echo(display_text(f"  {rank:>3}. {h.score:.4f}  [{h.label}]  {h.path}  (id {h.id})"))
    if failed:
        sys.exit(1)


@click.command()
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
        for line in describe_ann(data["count"], data["ann"]):
            click.echo(line)
    else:
        click.echo(f"index type: {data['index_type']}, metric {data['metric']}")
    click.echo(f"runtime:    {data.get('runtime') or 'unknown'} (when indexed)")
    wh = data.get("whitening")
    click.echo(f"whitening:  {'PCA to %d dims, learned on %d images' % (wh['dim'], wh['learned_on']) if wh else 'off'}")
    click.echo(f"heads:      {', '.join(data['heads']) or 'none'}")
    click.echo(f"updated:    {data['updated']} (created {data['created']})")
    click.echo("versions:   " + ", ".join(f"{k} {v}" for k, v in (data["versions"] or {}).items()))


@click.command()
@index_option
@click.option("--head", required=True, help="Name of a trained head.")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def classify(index_dir, head, images, top, as_json):
    """Predict classes of each IMAGE with a trained head."""
    from indexer.inputs.images import ImageDecodeError
    from search.engine import display_text

    engine = _open_engine(index_dir)
    failed = False
    for image in images:
        try:
            preds = engine.classify(image, head, top)
        except ImageDecodeError as exc:
            click.echo(f"{image}: {exc}", err=True)
            failed = True
            continue
        if as_json:
            click.echo(json.dumps({"image": display_text(str(image)), "head": head,
                                   "predictions": [{"class": c, "probability": p} for c, p in preds]}))
        else:
            click.echo(display_text(f"{image}: " + ", ".join(f"{c} {p:.3f}" for c, p in preds)))
    if failed:
        sys.exit(1)


@click.command()
@index_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder (default: DIR/report).")
def evaluate(index_dir, out_dir):
    """Retrieval and classification quality of a labelled index: HTML report with plots, and JSON."""
    from search.evaluation import evaluate_index
    from search.report import write_report

    results = evaluate_index(index_dir)
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
