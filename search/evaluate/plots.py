"""The evaluation report's figures (matplotlib, PNG): precision@k, confusion matrices, the embedding map.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


DPI = 110


THUMB_PX = 28  # thumbnails on the embedding map are at most THUMB_PX x THUMB_PX pixels


MAX_TICK_CLASSES = 30  # above this many classes the confusion matrix has no tick labels


MAX_ANNOTATED_CLASSES = 15  # at most this many classes get counts written in the cells


MAX_LEGEND_LABELS = 20


UNLABELLED = "(no label)"


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

    from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
    from imgsearch.indexer.folder.texts import display_text, texts_of
    from imgsearch.indexer.folder.whitening import search_space

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
    labels = np.array([display_text(lab) or UNLABELLED for lab in texts_of(sample, "label")])  # (n,)
    paths = texts_of(sample, "path")  # real names: the thumbnails are read from them
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

def chance_precision(per_label: dict) -> float:
    """Expected precision of a random ranking, leave-one-out: sum_l (n_l/n) (n_l-1)/(n-1) ~ sum_l (n_l/n)^2."""
    counts = np.array([v["images"] for v in per_label.values()], dtype=np.float64)  # (L,)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else 0.0
