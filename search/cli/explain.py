"""``imgsearch explain``: why a result matches a query, drawn as the two images side by side with their shares.

Registered through the ``imgsearch.commands`` entry points (pyproject.toml) like search/cli/commands.py's commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from imgsearch.indexer.options import Integer, index_option

SIDE = 336  # px: each image's drawn square (the 224 px the model sees, enlarged)
POSITIVE, NEGATIVE = (220, 38, 38), (37, 99, 235)  # red: where the score comes from; blue: where it is held back


def heat_overlay(square, shares: np.ndarray, scale: float):
    """``square`` (an RGB PIL image, the crop the model saw) with each cell tinted by its signed share:
    red for positive, blue for negative, opacity |share| / ``scale`` (one scale for both images)."""
    from PIL import Image

    rows, cols = shares.shape
    tint = np.zeros((rows, cols, 4), np.uint8)  # (h, w, RGBA)
    strength = np.clip(np.abs(shares) / scale, 0, 1) if scale > 0 else np.zeros_like(shares)
    tint[..., :3] = np.where((shares >= 0)[..., None], POSITIVE, NEGATIVE)
    tint[..., 3] = (strength * 200).astype(np.uint8)
    cells = Image.fromarray(tint, "RGBA").resize(square.size, Image.NEAREST)  # cells stay cells
    return Image.alpha_composite(square.convert("RGBA"), cells).convert("RGB")


def render(query_square, result_square, why, title: str):
    """The pair side by side, the heat on each, the score and a legend under them: an RGB PIL image."""
    from PIL import Image, ImageDraw

    scale = float(max(np.abs(why.query_shares).max(), np.abs(why.result_shares).max()))
    pad, text_h = 12, 64
    out = Image.new("RGB", (3 * pad + 2 * SIDE, 2 * pad + SIDE + text_h), "white")
    for i, (square, shares) in enumerate(((query_square, why.query_shares), (result_square, why.result_shares))):
        out.paste(heat_overlay(square.resize((SIDE, SIDE)), shares, scale), (pad + i * (SIDE + pad), pad))
    draw = ImageDraw.Draw(out)
    y = 2 * pad + SIDE
    head = f" + head {why.head_share:.4f}" if why.head else ""
    draw.text((pad, y), f"{title}   score {why.score:.4f} = query cells {why.query_sum - why.head_share:.4f}{head}"
                        f" = result cells {why.result_sum - why.head_share:.4f}{head}", fill="black")
    draw.text((pad, y + 18), "query (left), result (right); each cell's share of the score:", fill="black")
    x = pad
    for colour, words in ((POSITIVE, f"red: adds (up to {scale:.4f})"), (NEGATIVE, "blue: holds back")):
        draw.rectangle((x, y + 40, x + 14, y + 54), fill=colour)
        draw.text((x + 20, y + 41), words, fill="black")
        x += 200
    return out


def _id_or_file(text: str, hint: str) -> int | str:
    """An indexed id (a number that is not a file's name) or an image file's path.  Text that looks like a
    number but is no id (``1e400``, ``nan``, ``-3``, Arabic digits, 400 digits) gets the number parser's
    message; a name too long to be a file is not one."""
    try:
        if Path(text).is_file():
            return text
    except OSError:  # a name longer than the file system takes (400 digits): not a file
        pass
    if any(c.isdigit() for c in text) or text.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        try:
            return Integer(0).convert(text, None, None)
        except click.BadParameter as exc:
            raise click.BadParameter(f"not an image file, and as an id: {exc.message}", param_hint=hint) from None
    raise click.BadParameter(f"{text!r} is neither an image file nor an indexed id", param_hint=hint)


def _square(source, size: int, resample: str):
    """The centred square of an image that the model sees, as a PIL image."""
    from PIL import Image

    from imgsearch.indexer.inputs.images import decode_image

    return Image.fromarray(decode_image(source, size, resample=resample).array)


@click.command()
@index_option
@click.argument("query")
@click.argument("result", metavar="RESULT")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the pair side by side with the shares as heat overlays (PNG).")
@click.option("--head", default=None, help="Explain the head-aware score; the head's part is its own term.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON (the API's fields).")
@click.option("--box", default=None, metavar="X0,Y0,X1,Y1",
              help="Explain this region of QUERY, as 'imgsearch search --box' scores it: fractions of its width "
                   "and height (0,0 top left).")
def explain(index_dir, query, result, out, head, as_json, box):
    """Why RESULT matches QUERY: the score split over both images' feature-map cells.

    QUERY is an image file (one the index holds is explained as that indexed image), or an indexed
    image's id (a number that is not a file's name). RESULT is an indexed image: its id, or its file.
    Costs one forward pass of the model for the result's image and one for the query's.
    """
    from imgsearch.indexer.atomic import atomic_path
    from imgsearch.indexer.inputs.outputs import mark_output
    from imgsearch.indexer.folder.manifest import resample
    from imgsearch.search.engine import SearchEngine
    from imgsearch.search.query.regions import crop_region, parse_box
    from imgsearch.search.thumbnails import load_indexed, read_indexed

    from imgsearch.search.explain.explainer import explainer_for, indexed_id

    box = None if box is None else parse_box(box)  # bad arguments: one line, before the index is opened
    source, result_id = _id_or_file(query, "QUERY"), _id_or_file(result, "RESULT")
    engine = SearchEngine.open(index_dir)
    if not isinstance(source, int):
        found = indexed_id(engine, source)  # a file the index holds: that indexed image, by its id
        source = source if found is None else found
    label = f"image {source}" if isinstance(source, int) else query
    if not isinstance(result_id, int):
        result_id = indexed_id(engine, result_id)
        if result_id is None:
            raise click.BadParameter(f"{result!r} is not an image this index holds: give an indexed id, or the "
                                     "path of an indexed file (imgsearch search finds them)", param_hint="RESULT")
    why = engine.explain(source, result_id, head=head, box=box)
    if box is not None:
        label += f" (region {','.join(f'{v:g}' for v in box)})"
    if as_json:
        click.echo(json.dumps(why.to_dict()))
    else:
        click.echo(f"{label} -> image {result_id}: score {why.score:.4f}; query cells add up to "
                   f"{why.query_sum:.4f}, result cells to {why.result_sum:.4f}"
                   + (f" (head {head}: {why.head_share:.4f} of it)" if head else ""))
    if out is not None:
        # the size the model was run at: a preset's or a model file's is known only once it is opened
        size, how = explainer_for(engine).embedder.backbone.input_size, resample(engine.manifest)

        def indexed(row_id):
            img, _, _ = load_indexed(engine, row_id, max_pixels=engine.config.max_pixels)
            return _square(img, size, how)

        if box is not None:  # the region's square, as explained
            data = read_indexed(engine, source) if isinstance(source, int) else Path(source).read_bytes()
            query_square = _square(crop_region(data, box, engine.config.max_pixels), size, how)
        else:
            query_square = indexed(source) if isinstance(source, int) else _square(source, size, how)
        picture = render(query_square, indexed(result_id), why, f"{label} -> image {result_id}")
        mark_output([out])  # a picture imgsearch made is never indexed
        with atomic_path(out, suffix=".png") as tmp:
            picture.save(tmp, "PNG")
        click.echo(f"wrote {out}")
