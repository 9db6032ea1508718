"""The search package's commands: everything that reads an index folder.

Registered as ``imgsearch`` subcommands through the ``imgsearch.commands`` entry points
(pyproject.toml); the root group is ``web.cli.main``, which reports their errors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from imgsearch.indexer.options import Integer, Number, describe_ann, index_option


class ImageOrUrl(click.ParamType):
    """An existing image file, or a URL (anything with '://'; search/query/remote.py fetches http(s) and refuses the rest)."""

    name = "IMAGE|URL"
    _file = click.Path(exists=True, dir_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "://" in value:
            return value
        return self._file.convert(value, param, ctx)


def _open_engine(index_dir):
    from imgsearch.search.engine import SearchEngine

    return SearchEngine.open(index_dir)


def _example(value: str) -> int | Path:
    """A --like/--unlike value: an image file if one is there by that name, else an indexed id."""
    from imgsearch.indexer.errors import InvalidInputError, quote
    from imgsearch.indexer.numbers import id_field

    if os.path.isfile(value):  # (not Path.is_file: a name longer than the OS takes raises there, False here)
        return Path(value)
    if value.strip().isascii() and value.strip().isdigit():
        return id_field(value, "--like/--unlike")
    raise InvalidInputError(f"--like/--unlike {quote(value)} is neither an indexed id nor an image file")


@click.command()
@index_option
@click.argument("images", nargs=-1, type=ImageOrUrl())
@click.option("-k", "--top", "k", default=None, type=Integer(1, 1000), metavar="K",
              help="Results per query, 1 to 1000 (default 10; with --min-score, all that reach it, up to 1000).")
@click.option("--offset", default=0, show_default=True, type=Integer(0, 999), help="Skip this many of the best results.")
@click.option("--min-score", default=None, type=Number(-1, 1), help="Only results scoring at least this cosine (-1 to 1).")
@click.option("--like", multiple=True, metavar="ID|FILE",
              help="A positive example: an indexed id or an image file (repeat for several). With --like or "
                   "--unlike, IMAGES and the examples make one query.")
@click.option("--unlike", multiple=True, metavar="ID|FILE", help="A negative example (repeat for several).")
@click.option("--text", "texts", multiple=True, metavar="WORDS",
              help="Search by words, e.g. --text 'a red car' (an index built with an image-text preset such as "
                   "SigLIP); repeat for several queries. With --like or --unlike, a positive example.")
@click.option("--unlike-text", multiple=True, metavar="WORDS", help="A negative example in words (repeatable).")
@click.option("--strategy", default="rocchio", show_default=True, type=click.Choice(["rocchio", "best"]),
              help="Several examples: one combined query (rocchio) or each result by its best positive (best).")
@click.option("--head", default=None, help="Head-aware search: blend in this head's class probabilities.")
@click.option("--box", default=None, metavar="X0,Y0,X1,Y1",
              help="Search by this region of each image: fractions of its width and height (0,0 top left).")
@click.option("--allow-network", "allow_networks", multiple=True, metavar="CIDR",
              help="Fetch URLs from this network although it is private or loopback (e.g. 10.0.0.0/8); repeatable.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query.")
@click.option("--where", "where", multiple=True, metavar="FIELD OP VALUE",
              help="Only images whose metadata matches, inside the search (repeat: all must hold), e.g. "
                   "--where label=cats,dogs --where 'taken>=2020-01-01'. Fields: label, path_prefix, width, "
                   "height, file_size, mtime, taken, camera_make, camera_model; operators = >= <= > <.")
def search(index_dir, images, k, offset, min_score, like, unlike, texts, unlike_text, strategy, head, box,
           allow_networks, as_json, where):
    """Find the indexed images most similar to each IMAGE (a file, or an http(s) URL), to each --text, or to
    the examples --like and --unlike (and --text, --unlike-text with them).

    URLs are fetched through an SSRF guard (search/query/remote.py): public addresses only, unless
    --allow-network widens it.  A query that fails (not an image, a URL refused or unreachable) prints
    its reason, the others are answered, and the command exits 1.  --where: only images whose metadata
    matches, searched inside the index (search/query/filters.py).
    """
    from imgsearch.indexer.inputs.images import ImageDecodeError
    from imgsearch.search.query.filters import parse_where
    from imgsearch.search.query.remote import UrlFetchError, UrlNotAllowedError, UrlPolicy
    from imgsearch.search.query.examples import Example
    from imgsearch.search.query.spec import Query
    from imgsearch.search.query.text import check_text

    # the options read once, before the index is opened or the model loads: a bad one is one Error line
    q = Query.of(k, offset=offset, min_score=min_score, head=head, box=box, filter=parse_where(where),
                 strategy=strategy)
    flt = q.filter
    for text in (*texts, *unlike_text):
        check_text(text, "--text")
    if not (images or like or unlike or texts or unlike_text):
        raise click.UsageError("give IMAGES or --text to search by, or examples with --like/--unlike")
    examples = bool(like or unlike or unlike_text)
    if texts and box is not None:
        raise click.UsageError("--box takes a region of an image: search --text without it")
    if examples and (box is not None or any(isinstance(i, str) for i in images)):
        raise click.UsageError("--like/--unlike take indexed ids and image files; search by a URL or a --box "
                               "on its own")
    policy = UrlPolicy(allow_networks=allow_networks)
    engine = _open_engine(index_dir)
    if q.head is not None:
        engine.head(q.head)  # fail before embedding anything
    matched = engine.matching(flt) if flt is not None else None  # an unknown label fails here, before embedding
    if matched == 0:
        click.echo("no indexed image matches the --where filter", err=True)
    extra = {} if flt is None else {"filter": flt.describe(), "matched": matched}
    if examples:
        positive = [*images, *map(_example, like), *map(Example.of_text, texts)]
        negative = [*map(_example, unlike), *map(Example.of_text, unlike_text)]
        hits = engine.search_examples(positive, negative, query=q)
        names = [f"text {p.value!r}" if isinstance(p, Example) else str(p) if isinstance(p, Path) else f"id {p}"
                 for p in positive]
        _print_hits("like " + ", ".join(names) + "".join(f"; unlike {v}" for v in (*unlike, *unlike_text)), hits,
                    as_json, offset + 1, extra)
        return
    for text in texts:
        _print_hits(text, engine.search_text(text, query=q), as_json, offset + 1, extra)
    failed = False
    for image in images:
        try:
            if isinstance(image, str):  # a URL
                hits = engine.search_url(image, policy=policy, query=q)
            else:
                hits = engine.search_image(image, query=q)
        except (UrlNotAllowedError, UrlFetchError) as exc:  # their messages name the URL
            click.echo(str(exc), err=True)
            failed = True
            continue
        except ImageDecodeError as exc:
            click.echo(f"{image}: {exc}", err=True)
            failed = True
            continue
        _print_hits(str(image), hits, as_json, offset + 1, extra)
    if failed:
        sys.exit(1)


def _print_hits(query: str, hits, as_json: bool, first_rank: int = 1, extra: dict | None = None) -> None:
    from imgsearch.search.engine import display_text

    if as_json:  # paths as shown (valid UTF-8 whatever their bytes); the id names the image
        shown = [dataclasses.replace(h, path=display_text(h.path), label=display_text(h.label)) for h in hits]
        click.echo(json.dumps({"query": display_text(query), "results": [h.to_dict() for h in shown],
                               **(extra or {})}))
    else:
        click.echo(display_text(f"{query}:"))
        for rank, h in enumerate(hits, first_rank):
            click.echo(display_text(f"  {rank:>3}. {h.score:.4f}  [{h.label}]  {h.path}  (id {h.id})"))


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
    if bb.get("external"):
        click.echo(f"backbone:   {bb['name']}: vectors made elsewhere (imgsearch index-vectors), dim {data['dim']}; "
                   "query by vector or id")
    else:
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
@click.option("--top", default=5, show_default=True, type=Integer(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
def classify(index_dir, head, images, top, as_json):
    """Predict classes of each IMAGE with a trained head."""
    from imgsearch.indexer.inputs.images import ImageDecodeError
    from imgsearch.search.engine import display_text

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
    from imgsearch.indexer.progress import step
    from imgsearch.search.evaluate.metrics import evaluate_index
    from imgsearch.search.evaluate.report import write_report

    with step("measuring retrieval (leave-one-out), kNN and the heads on the stored embeddings", leave=False):
        results = evaluate_index(index_dir)
    with step("writing the report and its plots", leave=False):
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
@click.option("--threshold", type=Number(0, 1, above_low=True), default=None,
              help="Cosine score a member must reach against its group's keeper (default: the calibrated one, "
                   "imgsearch.search.duplicates.groups.DEFAULT_THRESHOLD; the output says which was used).")
@click.option("--keep", type=click.Choice(["largest", "smallest", "oldest", "newest"]), default="largest",
              show_default=True, help="The image of a group to keep: most pixels (then largest file), fewest "
                                      "pixels (then smallest file), indexed first, or indexed last.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per group, one per line.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --json: write the lines to this file instead of printing them.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per image of each group to this CSV file.")
@click.option("--limit", type=Integer(1), default=None, help="Show at most this many groups.")
@click.option("--keypoints/--no-keypoints", default=True, show_default=True,
              help="Verify pairs scoring 0.55 to 0.99 (search/duplicates/verifier.py): one transform must "
                   "explain the pair, so crops and rotations below the threshold join and look-alikes above "
                   "it do not; reads the files unless 'imgsearch index --refresh-features' stored features.")
@click.option("--remove-others", is_flag=True,
              help="Remove every member but the keeper of each group shown from the index (as 'imgsearch "
                   "remove' does; the files stay on disk), after listing them and asking.")
@click.option("--yes", is_flag=True, help="With --remove-others: do not ask.")
@click.pass_context
def duplicates(ctx, index_dir, threshold, keep, as_json, out_file, csv_file, limit, keypoints, remove_others, yes):
    """List groups of near-duplicate images (and exact copies) for review.

    Each group is the same picture resized, re-encoded, cropped or edited: every member scores at least
    the threshold (the cosine gate) against the group's keeper, or, with --keypoints, the verifier found
    it is the keeper's picture edited, or a verified member's ("checked against id N"); --json and --csv
    give each member's evidence (what decided, and via: the member it was checked against).
    Pairs marked with 'imgsearch not-duplicates' are never in one group. Files are never deleted;
    --remove-others removes the non-kept members from the index.
    """
    from imgsearch.search.engine import display_text

    if as_json and csv_file:
        raise click.UsageError("choose one of --json and --csv")
    if out_file and not as_json:
        raise click.UsageError("--out writes the --json lines: add --json (or use --csv FILE)")
    if remove_others and (as_json or csv_file):
        raise click.UsageError("--remove-others lists what it removes and asks: leave out --json and --csv")
    from imgsearch.search.errors import DuplicatesCancelledError

    try:  # a bar per stage on a terminal (search/duplicates/progress.py)
        report = _open_engine(index_dir).duplicates(threshold, keep, keypoints)
    except KeyboardInterrupt:
        raise DuplicatesCancelledError("finding duplicates stopped (Ctrl-C); nothing was written") from None
    groups = report.groups[:limit] if limit else report.groups
    if csv_file:
        _write_duplicates_csv(csv_file, groups)
    if as_json:
        lines = [json.dumps(dict(g.to_dict(), paths=[display_text(p) for p in g.paths])) for g in groups]
        if out_file:
            from imgsearch.indexer.atomic import atomic_write_bytes

            atomic_write_bytes(out_file, "".join(f"{line}\n" for line in lines).encode())
            click.echo(f"wrote {len(lines)} groups to {out_file}", err=True)
        for line in [] if out_file else lines:
            click.echo(line)
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
            found = g.evidence[i] if i < len(g.evidence) else {}
            via = found.get("via")
            through = f"  (checked against id {via})" if via not in (None, g.keep) else ""
            if found.get("decided_by") == "cosine" and found.get("match") is False:  # in by its score alone
                through += f"  (by its score; the {found.get('check')} check did not confirm it)"
            click.echo(display_text(f"  {'keep' if i == 0 else '    '}  {score:.4f}  id {row_id:<8d} {path}{through}"))
    if remove_others:
        _remove_others(ctx, index_dir, groups, report.groups, yes)


def _remove_others(ctx, index_dir, groups, every, yes: bool) -> None:
    """Remove the non-kept members of ``groups`` from the index, after listing them and asking (``yes``: not);
    ``every``: all groups, whose exact copies of a removed image are listed with it (they leave the index too)."""
    from importlib.metadata import entry_points

    from imgsearch.search.engine import display_text

    # exact copies are one indexed image (their files were never indexed apart): nothing to remove
    others = [(i, p) for g in groups if not g.exact for i, p in zip(g.ids[1:], g.paths[1:])]
    if not others:
        click.echo("no near-duplicate members to remove")
        return
    click.echo(f"to remove from the index ({len(others)} images; their files stay on disk):")
    copies = {g.keep: g.paths[1:] for g in every if g.exact}
    for row_id, path in others:
        click.echo(display_text(f"  id {row_id:<8d} {path}"))
        for copy in copies.get(row_id, []):  # the same bytes, recorded as a copy of the removed image
            click.echo(display_text(f"     (its exact copy {copy})"))
    if not yes:
        click.confirm(f"remove these {len(others)} images from {index_dir}?", abort=True)
    # 'imgsearch remove' itself, found as the root group finds it: writing is the indexer's (search only reads)
    remove = next(p for p in entry_points(group="imgsearch.commands") if p.name == "remove").load()
    ctx.invoke(remove, index_dir=index_dir, items=tuple(str(i) for i, _ in others), no_wait=False)


def _write_duplicates_csv(path: Path, groups) -> None:
    import csv
    import io

    from imgsearch.indexer.atomic import atomic_write_bytes
    from imgsearch.search.engine import display_text

    out = io.StringIO()
    writer = csv.writer(out)
    evidence = ["decided_by", "via", "check", "inliers", "coverage", "agreement", "correlation", "scale", "rotation",
                "region", "occluded", "detail"]
    writer.writerow(["group", "id", "path", "score", "keeper", "exact", "width", "height", "file_size", *evidence])
    for g in groups:
        for i, (row_id, p, score) in enumerate(zip(g.ids, g.paths, g.scores)):
            found = g.evidence[i] if i < len(g.evidence) else {}
            size = g.sizes[i] if i < len(g.sizes) else {}
            writer.writerow([g.group, row_id, display_text(p), f"{score:.6f}", i == 0, g.exact,
                             *("" if size.get(k) is None else size[k] for k in ("width", "height", "file_size")),
                             *(" ".join(map(str, v)) if isinstance(v := found.get(k, ""), list) else v
                               for k in evidence)])
    atomic_write_bytes(path, out.getvalue().encode())
