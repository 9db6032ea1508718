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
@click.option("--where", "where", multiple=True, metavar="FIELD OP VALUE",
              help="Only images whose metadata matches, inside the search (repeat: all must hold), e.g. "
                   "--where label=cats,dogs --where 'taken>=2020-01-01'. Fields: label, path_prefix, width, "
                   "height, file_size, mtime, taken, camera_make, camera_model; operators = >= <= > <.")
def search(index_dir, images, k, head, as_json, where):
    """Find the indexed images most similar to each IMAGE."""
    from indexer.inputs.images import ImageDecodeError
    from search.engine import display_text, hits_to_json
    from search.filters import parse_where

    flt = parse_where(where)  # a bad expression fails before the index is opened
    engine = _open_engine(index_dir)
    if head is not None:
        engine.head(head)  # fail before embedding anything
    matched = engine.matching(flt) if flt is not None else None  # an unknown label fails here, before embedding
    if matched == 0:
        click.echo("no indexed image matches the --where filter", err=True)
    failed = False
    for image in images:
        try:
            hits = engine.search_image(image, k, head=head, filter=flt)
        except ImageDecodeError as exc:
            click.echo(f"{image}: {exc}", err=True)
            failed = True
            continue
        if as_json:  # paths as shown (valid UTF-8 whatever their bytes); the id names the image
            shown = [dataclasses.replace(h, path=display_text(h.path), label=display_text(h.label)) for h in hits]
            extra = {} if flt is None else {"filter": flt.describe(), "matched": matched}
            click.echo(json.dumps(dict(hits_to_json(display_text(str(image)), shown), **extra)))
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


@click.command()
@index_option
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Cosine score a member must reach against its group's keeper (default: the calibrated one, "
                   "search.duplicates.DEFAULT_THRESHOLD; the output says which was used).")
@click.option("--keep", type=click.Choice(["largest", "smallest", "oldest", "newest"]), default="largest",
              show_default=True, help="The image of a group to keep: most pixels (then largest file), fewest "
                                      "pixels (then smallest file), indexed first, or indexed last.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group, one per line.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per image of each group to this CSV file.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Show at most this many groups.")
@click.option("--keypoints/--no-keypoints", default=True, show_default=True,
              help="Also group pairs scoring below the threshold (down to 0.55) whose files' keypoints match "
                   "under one transform: finds crops, rotations and stickers, not look-alikes; reads the files.")
def duplicates(index_dir, threshold, keep, as_json, csv_file, limit, keypoints):
    """List groups of near-duplicate images (and exact copies) for review.

    Each group is the same picture resized, re-encoded, cropped or edited: every member scores at least
    the threshold against the group's keeper.  Nothing is deleted: 'imgsearch remove' takes the ids.
    """
    from search.engine import display_text

    if as_json and csv_file:
        raise click.UsageError("choose one of --json and --csv")
    report = _open_engine(index_dir).duplicates(threshold, keep, keypoints)
    groups = report.groups[:limit] if limit else report.groups
    if csv_file:
        _write_duplicates_csv(csv_file, groups)
    if as_json:
        for g in groups:
            click.echo(json.dumps(dict(g.to_dict(), paths=[display_text(p) for p in g.paths])))
        return
    how = "exact search" if report.method == "exact" else f"approximate search ({report.method[4:]})"
    shown = f", {len(groups)} shown" if len(groups) < len(report.groups) else ""
    checked = (f"; keypoints confirmed {report.confirmed} pairs below it and refuted {report.refuted} above"
               if report.keypoints else "")
    click.echo(f"{len(report.groups)} groups of duplicates{shown} among {report.images} images (threshold "
               f"{report.threshold:.3f}{checked}, keep {report.keep}, {how}) in {report.seconds:.1f} s")
    if csv_file:
        click.echo(f"wrote {csv_file}")
        return
    for g in groups:
        kind = "exact copies" if g.exact else f"{len(g.ids)} images"
        click.echo(f"group {g.group}: keep id {g.keep}, {kind}")
        for i, (row_id, path, score) in enumerate(zip(g.ids, g.paths, g.scores)):
            click.echo(display_text(f"  {'keep' if i == 0 else '    '}  {score:.4f}  id {row_id:<8d} {path}"))


def _write_duplicates_csv(path: Path, groups) -> None:
    import csv
    import io

    from indexer.atomic import atomic_write_bytes
    from search.engine import display_text

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["group", "id", "path", "score", "keeper", "exact"])
    for g in groups:
        for i, (row_id, p, score) in enumerate(zip(g.ids, g.paths, g.scores)):
            writer.writerow([g.group, row_id, display_text(p), f"{score:.6f}", i == 0, g.exact])
    atomic_write_bytes(path, out.getvalue().encode())
