"""``imgsearch not-duplicates``: mark images that are not duplicates of each other, unmark them, list the marks.

Writes the index folder (``indexer/run/dup_marks.py``, under the writer lock), so it is the indexer's;
``imgsearch duplicates`` (search) respects the marks, and the server marks through this command
(web/review_api.py), as it trains heads through ``imgsearch train-head``.
"""

from __future__ import annotations

import json

import click

from imgsearch.indexer.cli import _echo_error, no_wait_option
from imgsearch.indexer.options import index_option


@click.command("not-duplicates")
@index_option
@click.argument("ids", nargs=-1)
@click.option("--unmark", is_flag=True, help="Remove the marks of every pair among IDS instead.")
@click.option("--list", "as_list", is_flag=True, help="List the marks (IDS not given).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the counts, or one mark per line with --list.")
@no_wait_option
def not_duplicates(index_dir, ids, unmark, as_list, as_json, no_wait):
    """Mark IDS as not duplicates of each other: every pair among them (two ids: a pair; a group's ids: the
    whole group). Later 'imgsearch duplicates' runs never put a marked pair in one group. Marks are kept by
    the images' content (sha256), so they hold in new versions and when a file is indexed again.
    """
    from imgsearch.indexer.run.dup_marks import list_marks, mark_not_duplicates
    from imgsearch.indexer.run.dup_marks import unmark as unmark_ids

    if as_list:
        if ids or unmark:
            raise click.UsageError("--list takes no IDS and no --unmark")
        marks = list_marks(index_dir)
        if not marks and not as_json:
            click.echo(f"no pairs are marked in {index_dir}")
        for m in marks:
            now = "/".join("-" if i is None else str(i) for i in m["ids"])
            click.echo(json.dumps(m) if as_json else f"ids {now} (marked as {m['marked_ids'][0]}/"
                                                     f"{m['marked_ids'][1]} on {m['marked']})  {m['paths'][0]}  "
                                                     f"{m['paths'][1]}")
        return
    try:
        summary = (unmark_ids if unmark else mark_not_duplicates)(index_dir, ids, wait=not no_wait)
    except Exception as exc:
        if as_json:  # the error's kind too, for a program running this command (the server: web/review_api.py)
            _echo_error(exc)
        raise
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    verb = "unmarked" if unmark else "marked"
    rest = summary.pairs - summary.changed
    why = f"; {rest} {'were not marked' if unmark else 'marked already'}" if rest else ""
    click.echo(f"{verb} {summary.changed} of {summary.pairs} pairs{why}; {summary.total} marks in {index_dir}")
