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

import numpy as np

log = logging.getLogger(__name__)

DPI = 110
THUMB_PX = 28  # thumbnails on the embedding map are at most THUMB_PX x THUMB_PX pixels
MAX_TICK_CLASSES = 30  # above this many classes the confusion matrix has no tick labels
MAX_ANNOTATED_CLASSES = 15  # at most this many classes get counts written in the cells
MAX_LEGEND_LABELS = 20
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
    log.info("report written to %s", page)
    return page


# ---------------------------------------------------------------- figures


def chance_precision(per_label: dict) -> float:
    """Expected precision of a random ranking, leave-one-out: sum_l (n_l/n) (n_l-1)/(n-1) ~ sum_l (n_l/n)^2."""
    counts = np.array([v["images"] for v in per_label.values()], dtype=np.float64)  # (L,)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else 0.0


def plot_precision_at_k(retrieval: dict, path: Path) -> str:
    """Precision@k against k, with dashed chance level; returns the file name."""
    from matplotlib.figure import Figure

    k = np.asarray(retrieval["k"])  # (K,)
    prec = np.asarray(retrieval["precision_curve"])  # (K,)
    chance = chance_precision(retrieval["per_label"])
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(k, prec, color="#1f5fa8", linewidth=2, marker="o", markersize=3, label="precision@k")
    ax.axhline(chance, color="#888888", linestyle="--", linewidth=1.2, label=f"chance (random ranking) {chance:.3f}")
    for kk in (1, 10):
        if kk <= len(prec):
            ax.annotate(f"p@{kk} = {prec[kk - 1]:.3f}", (kk, prec[kk - 1]), xytext=(8, 8),
                        textcoords="offset points", fontsize=9, color="#1f5fa8")
    ax.set_xlim(0.5, k[-1] + 0.5)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k (neighbours retrieved)")
    ax.set_ylabel("precision@k")
    ax.set_title(f"Leave-one-out precision@k: {retrieval['queries']:,} queries, {retrieval['labels']} labels",
                 fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper right", frameon=False)
    fig.savefig(path, dpi=DPI)
    return path.name


def plot_confusion(confusion, classes: list[str], path: Path, *, title: str = "") -> str:
    """Row-normalised confusion matrix (rows = true class) as a heatmap; returns the file name."""
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.int64)  # (C, C) rows true, columns predicted
    c = len(counts)
    rows = counts.sum(axis=1, keepdims=True)  # (C, 1)
    share = np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)  # (C, C)
    side = float(np.clip(3.5 + 0.42 * c, 6.5, 11))  # inches; wider is scaled down by the page
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.75, label="share of the true class")
    if c <= MAX_TICK_CLASSES:
        size = 10 if c <= 12 else 8
        ax.set_xticks(range(c), [str(x) for x in classes], rotation=45, ha="right", rotation_mode="anchor",
                      fontsize=size)
        ax.set_yticks(range(c), [f"{x} ({n})" for x, n in zip(classes, rows[:, 0])], fontsize=size)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        title += f"\n({c} classes in the order of report.json, labels left out)"
    if c <= MAX_ANNOTATED_CLASSES:
        for i, j in zip(*np.nonzero(counts)):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=9 if c <= 10 else 7,
                    color="white" if share[i, j] > 0.5 else "#222222")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (validation images)")
    ax.set_title(title, fontsize=11)
    fig.savefig(path, dpi=DPI)
    return path.name


def plot_embedding_map(index_dir, path: Path, *, points: int = 1500, thumbnails: int = 250, seed: int = 0) -> str | None:
    """t-SNE map of a seeded sample of the index, coloured by label, with thumbnails.

    Returns the file name, or None when the index holds too few images for a map.
    """
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from indexer.store import EmbeddingStore, embeddings_of
    from indexer.whitening import search_space

    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    table = store.read_table(manifest["shards"], ["id", "path", "label", "embedding"])
    n_all = table.num_rows
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n_all, points, replace=False)) if n_all > points else np.arange(n_all)  # (n,)
    n = len(rows)
    if n < 5:
        log.warning("%s holds %d images: too few for an embedding map", index_dir, n_all)
        return None
    sample = table.take(rows)
    vectors = search_space(embeddings_of(sample), index_dir, manifest)  # (n, D) what the search compares
    labels = np.array([lab or UNLABELLED for lab in sample.column("label").to_pylist()])  # (n,)
    paths = sample.column("path").to_pylist()
    xy = embed_2d(vectors, seed)  # (n, 2)

    names = sorted(set(labels.tolist()) - {UNLABELLED}) + ([UNLABELLED] if UNLABELLED in labels else [])
    colours = _label_colours(names)
    fig = Figure(figsize=(11, 9.5), layout="constrained")
    ax = fig.add_subplot()
    for name in names:
        m = labels == name
        ax.scatter(xy[m, 0], xy[m, 1], s=10, color=colours[name], alpha=0.7, linewidths=0, label=name)
    shown, unreadable = 0, 0
    for i in spread_sample(xy, thumbnails, seed):
        picture = load_thumbnail(paths[i])
        if picture is None:
            unreadable += 1
            continue
        box = AnnotationBbox(OffsetImage(picture, zoom=72 / DPI), xy[i], frameon=True, pad=0.08,
                             bboxprops={"edgecolor": colours[labels[i]], "linewidth": 1.2})
        ax.add_artist(box)
        shown += 1
    if unreadable:
        log.warning("embedding map: %d of %d thumbnail images could not be opened", unreadable, shown + unreadable)
    if len(names) <= MAX_LEGEND_LABELS:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, markerscale=2.5, fontsize=9,
                  title="label")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE map of {n:,} of {n_all:,} images ({shown} shown as thumbnails); "
                 "near = similar embeddings", fontsize=11)
    fig.savefig(path, dpi=DPI)
    return path.name


def embed_2d(vectors: np.ndarray, seed: int = 0) -> np.ndarray:
    """(n, D) vectors -> (n, 2) t-SNE coordinates, after PCA to at most 50 dimensions."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(vectors)
    reduced = PCA(n_components=min(50, n, vectors.shape[1]), random_state=seed).fit_transform(vectors)  # (n, <=50)
    tsne = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30.0, (n - 1) / 3))
    return tsne.fit_transform(reduced.astype(np.float32))  # (n, 2)


def spread_sample(xy: np.ndarray, count: int, seed: int = 0) -> list[int]:
    """Up to ``count`` row indices of xy (n, 2), picked at random but kept apart so thumbnails overlap little.

    Points are taken in a seeded random order and kept when far enough from
    the ones already kept; the distance halves on each pass until enough are kept.
    """
    n = len(xy)
    count = min(max(count, 0), n)
    if count == 0:
        return []
    span = np.ptp(xy, axis=0)  # (2,)
    unit = (xy - xy.min(axis=0)) / np.where(span > 0, span, 1)  # (n, 2) in [0, 1]
    order = np.random.default_rng(seed).permutation(n)
    kept: list[int] = []
    taken = np.zeros(n, dtype=bool)
    gap = 0.045  # about one thumbnail on the map
    while len(kept) < count:
        for i in order:
            if taken[i]:
                continue
            if kept and np.min(np.abs(unit[kept] - unit[i]).max(axis=1)) < gap:
                continue
            kept.append(int(i))
            taken[i] = True
            if len(kept) == count:
                break
        gap /= 2
        if gap < 1e-4:  # the rest sit on top of each other: take them in order
            kept += [int(i) for i in order if not taken[i]][: count - len(kept)]
    return kept


def load_thumbnail(path: str) -> np.ndarray | None:
    """(h, w, 3) uint8 thumbnail of at most THUMB_PX on a side, transparency on white; None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # JPEGs decode at reduced size: fast
            img.thumbnail((THUMB_PX, THUMB_PX))
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                img = img.convert("RGBA")
                img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img)
            return np.asarray(img.convert("RGB"))
    except Exception as exc:  # a moved, deleted or damaged file must not stop the report
        log.debug("thumbnail of %s: %s", path, exc)
        return None


def _label_colours(names: list[str]) -> dict[str, tuple]:
    """A distinct colour per label; unlabelled images are grey."""
    from matplotlib import colormaps

    coloured = [x for x in names if x != UNLABELLED]
    k = len(coloured)
    if k <= 10:
        palette = colormaps["tab10"].colors
    elif k <= 20:
        palette = colormaps["tab20"].colors
    else:
        palette = colormaps["turbo"](np.linspace(0.05, 0.95, k))
    colours = {name: tuple(palette[i]) for i, name in enumerate(coloured)}
    colours[UNLABELLED] = (0.6, 0.6, 0.6)
    return colours


# ---------------------------------------------------------------- HTML


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
             + (f"; trained on {_count(trained['train_images'])} images, validated on "
                f"{_count(trained['val_images'])} held-out images" if "train_images" in trained else "")
             + (f", {_e(trained['epochs'])} epochs" if "epochs" in trained else "") + ".</p>"]
    if not val:
        return parts + ['<p class="note">No validation figures were recorded for this head.</p>']
    knn_k = trained.get("knn_k")
    knn_title = f"kNN vote{f' (k = {knn_k})' if knn_k else ''}, same split"
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
