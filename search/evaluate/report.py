"""HTML evaluation report with PNG plots, rendered from `search.evaluation.evaluate_index`.

``write_report(results, out_dir)`` writes into ``out_dir``::

    index.html            the report; self-contained apart from the PNGs beside it, works offline
    report.json           ``results`` as given (what scripts read)
    precision_at_k.png    leave-one-out precision@k curve, with the chance level   (labelled index)
    confusion_NAME.png    each head's row-normalised confusion on its validation images
    embedding_map.png     t-SNE map of a sample of the embeddings, with thumbnails (``index_dir`` given)

Plots are drawn on `matplotlib.figure.Figure` objects, never through pyplot,
so nothing touches matplotlib's global backend or figure registry.
"""

from __future__ import annotations

import html
import json
import logging
import re
import time
from pathlib import Path
from urllib.parse import quote

from imgsearch.indexer.inputs.outputs import mark_output
from imgsearch.search.evaluate.plots import (
    chance_precision,
    plot_confusion,
    plot_embedding_map,
    plot_precision_at_k,
)

log = logging.getLogger(__name__)


UNLABELLED = "(no label)"


def write_report(results: dict, out_dir, *, index_dir=None, map_points: int = 1500, thumbnails: int = 250,
                 seed: int = 0) -> Path:
    """Write out_dir/index.html, out_dir/report.json and PNG plots; return the HTML path.

    ``results`` is the dict of `search.evaluation.evaluate_index`.  The
    embedding map needs the index itself (``index_dir``): a seeded sample of at
    most ``map_points`` images, ``thumbnails`` of them drawn as pictures.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(results, indent=2), encoding="utf-8")

    plots: dict[str, str] = {}  # plot key -> file name inside out_dir
    retrieval = results.get("retrieval")
    if retrieval:
        plots["precision"] = _timed(plot_precision_at_k, retrieval, out / "precision_at_k.png")
    for name, head in (results.get("heads") or {}).items():
        if head.get("validation"):
            plots[f"confusion:{name}"] = _timed(plot_confusion, head["validation"]["confusion"], head["classes"],
                                                out / f"confusion_{_file_safe(name)}.png",
                                                title=f"Head {name!r}: confusion on its validation images")
    if index_dir is not None:
        made = _timed(plot_embedding_map, index_dir, out / "embedding_map.png",
                      points=map_points, thumbnails=thumbnails, seed=seed)
        if made:
            plots["map"] = made

    page = out / "index.html"
    page.write_text(render_html(results, plots), encoding="utf-8")
    mark_output([out / "report.json", page, *(out / name for name in plots.values())])  # never indexed
    log.info("report written to %s", page)
    return page




STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       background: #f4f5f7; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 2px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e3e6eb; }
h3 { font-size: 16px; margin: 22px 0 8px; }
.sub { color: #5b6475; margin: 0 0 16px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); gap: 10px; }
.fact { background: #f4f6fa; border-radius: 8px; padding: 10px 14px; }
.fact .k { display: block; color: #5b6475; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.fact .v { font-size: 19px; font-weight: 600; overflow-wrap: anywhere; }
table { border-collapse: collapse; margin: 8px 0 14px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e3e6eb; text-align: left; }
th { background: #f4f6fa; font-weight: 600; font-size: 13px; }
td.n, th.n { text-align: right; }
tr:nth-child(even) td { background: #fafbfc; }
.bar { display: inline-block; height: 9px; background: #4a86c8; border-radius: 2px; vertical-align: middle;
       margin-left: 8px; }
.bar-cell { white-space: nowrap; }
.note { color: #5b6475; font-size: 14px; max-width: 820px; }
img.plot { max-width: 100%; height: auto; border: 1px solid #e3e6eb; border-radius: 6px; display: block;
           margin: 8px 0; }
code { background: #f4f6fa; padding: 1px 5px; border-radius: 4px; font-size: 13px; }
"""


def render_html(results: dict, plots: dict[str, str]) -> str:
    """The report page; ``plots`` maps plot keys to PNG file names beside the page."""
    info = results.get("index") or {}
    retrieval, knn = results.get("retrieval"), results.get("knn")
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>imgsearch evaluation: {_e(Path(str(info.get('dir', ''))).name or 'index')}</title>",
        f"<style>{STYLE}</style>", "</head>", "<body>", "<main>",
        "<h1>imgsearch evaluation report</h1>",
        f'<p class="sub">Index <code>{_e(info.get("dir", ""))}</code>, '
        f"generated {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>",
        '<div class="facts">',
        _fact("backbone", info.get("backbone", "?")),
        _fact("images", _count(info.get("images"))),
        _fact("labelled images", _count(info.get("labelled_images"))),
        _fact("whitening", _whitening(info.get("whitening"))),
        "</div>",
    ]
    parts += _retrieval_section(retrieval, knn, plots)
    for name, head in (results.get("heads") or {}).items():
        parts += _head_section(name, head, retrieval, plots)
    if "map" in plots:
        parts += ["<h2>Embedding map</h2>",
                  '<p class="note">A t-SNE projection of a sample of the embeddings in the space the search '
                  "compares. Images close together have similar embeddings; a label whose colour is spread over "
                  "the map is one the backbone does not separate. Framed thumbnails are coloured by label.</p>",
                  _img(plots["map"], "t-SNE map of the embeddings")]
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts)


def _retrieval_section(retrieval: dict | None, knn: dict | None, plots: dict[str, str]) -> list[str]:
    parts = ["<h2>Retrieval</h2>"]
    if not retrieval:
        return parts + ['<p class="note">The index has no labels (or a single one), so there are no retrieval '
                        "figures. Index images in one sub-folder per class to have them labelled.</p>"]
    chance = chance_precision(retrieval["per_label"])
    rows = [("precision@1", retrieval["precision_at_1"]), ("precision@10", retrieval["precision_at_10"]),
            ("mAP", retrieval["map"])]
    if knn:
        rows.append((f"kNN leave-one-out accuracy (k = {knn['k']})", knn["accuracy"]))
    rows.append(("chance precision (random ranking)", chance))
    parts.append('<table><tr><th>figure</th><th class="n">value</th></tr>')
    parts += [f'<tr><td>{_e(k)}</td><td class="n">{_num(v)}</td></tr>' for k, v in rows]
    parts += ["</table>",
              f'<p class="note">Every labelled image queries all the others ({_count(retrieval["queries"])} '
              f"queries, {_count(retrieval['images'])} images, {_count(retrieval['labels'])} labels); "
              "a neighbour counts when it shares the query's label.</p>"]
    if "precision" in plots:
        parts.append(_img(plots["precision"], "precision at k"))

    per_label = sorted(retrieval["per_label"].items(), key=lambda kv: (kv[1]["ap"], kv[1]["precision_at_10"]))
    parts += ["<h3>Per label, worst first</h3>",
              '<table><tr><th>label</th><th class="n">images</th><th class="n">p@1</th>'
              '<th class="n">p@10</th><th>AP</th></tr>']
    for label, v in per_label:
        parts.append(f"<tr><td>{_e(label)}</td><td class=\"n\">{_count(v['images'])}</td>"
                     f"<td class=\"n\">{_num(v['precision_at_1'])}</td><td class=\"n\">{_num(v['precision_at_10'])}</td>"
                     f"<td class=\"bar-cell\">{_num(v['ap'])}{_bar(v['ap'])}</td></tr>")
    parts.append("</table>")
    return parts


def _head_section(name: str, head: dict, retrieval: dict | None, plots: dict[str, str]) -> list[str]:
    val, knn = head.get("validation"), head.get("knn_validation")
    trained = head.get("trained") or {}
    parts = [f"<h2>Head {_e(name)}</h2>",
             f'<p class="note">{len(head.get("classes", []))} classes, labels from {_e(head.get("labels_source", "?"))}'
             + (f"; made from the class names alone (zero-shot), measured on the {_count(trained['val_images'])} "
                "images labelled with one" if trained.get("model") == "zero-shot" else
                f"; trained on {_count(trained['train_images'])} images, validated on "
                f"{_count(trained['val_images'])} held-out images" if "train_images" in trained else "")
             + (f", {_e(trained['epochs'])} epochs" if "epochs" in trained else "") + ".</p>"]
    if not val:
        return parts + ['<p class="note">No validation figures were recorded for this head.</p>']
    knn_k = trained.get("knn_k")
    knn_title = f"kNN vote{f' (k = {knn_k})' if knn_k else ''}, " + (
        "leave-one-out, same images" if trained.get("model") == "zero-shot" else "same split")
    parts += ['<table><tr><th>validation images</th><th class="n">head</th>'
              f'<th class="n">{_e(knn_title)}</th></tr>']
    for key, title in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        parts.append(f'<tr><td>{title}</td><td class="n">{_num(val[key])}</td>'
                     f'<td class="n">{_num(knn[key]) if knn else "–"}</td></tr>')
    parts += ["</table>", "<h3>Worst classes</h3>",
              '<table><tr><th>class</th><th class="n">validation images</th><th>F1 head</th>'
              '<th class="n">F1 kNN</th></tr>']
    knn_f1 = (knn or {}).get("per_class_f1", {})
    for w in val.get("worst_classes", []):
        parts.append(f"<tr><td>{_e(w['class'])}</td><td class=\"n\">{_count(w['support'])}</td>"
                     f"<td class=\"bar-cell\">{_num(w['f1'])}{_bar(w['f1'])}</td>"
                     f"<td class=\"n\">{_num(knn_f1[w['class']]) if w['class'] in knn_f1 else '–'}</td></tr>")
    parts.append("</table>")
    key = f"confusion:{name}"
    if key in plots:
        parts.append(_img(plots[key], f"confusion matrix of head {name}"))
    return parts


def _fact(key: str, value) -> str:
    return f'<div class="fact"><span class="k">{_e(key)}</span><span class="v">{_e(value)}</span></div>'


def _img(file_name: str, alt: str) -> str:
    return f'<img class="plot" src="{_e(quote(file_name))}" alt="{_e(alt)}">'


def _bar(x: float) -> str:
    return f'<span class="bar" style="width:{max(0.0, min(1.0, float(x))) * 120:.0f}px"></span>'


def _whitening(info) -> str:
    if not info:
        return "off"
    if isinstance(info, dict):
        details = ", ".join(f"{k} {v}" for k, v in info.items() if k != "file")
        return f"on ({details})" if details else "on"
    return str(info)


def _num(x) -> str:
    return "–" if x is None else _e(f"{float(x):.3f}")


def _count(x) -> str:
    return "?" if x is None else _e(f"{int(x):,}")


def _e(x) -> str:
    return html.escape(str(x))


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name)) or "head"


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    made = fn(*args, **kwargs)
    log.info("%s: %.1f s", fn.__name__, time.perf_counter() - started)
    return made
