"""Linear classification heads trained on the stored embeddings.

Transfer learning with a frozen CNN: the embeddings in the index are the
bottleneck features, computed once; a head is a softmax layer (multinomial
logistic regression) trained on them in seconds.  Heads live inside the index
folder, one sub-folder each::

    DIR/heads/NAME/head.npz     weights (D, C) and bias (C,)
    DIR/heads/NAME/head.json    classes, backbone, dim, metrics, validation ids
    DIR/heads/NAME/search-GEN.faiss   head-aware search index (see below)

Head-aware search appends the head's class probabilities, L2-normalised and
scaled by ``search_weight``, to each embedding (index and query alike) and
re-normalises, so similarity becomes
``(cos(e_q, e_i) + w^2 cos(p_q, p_i)) / (1 + w^2)``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .store import EmbeddingStore, embeddings_of
from .vectors import l2_normalize

log = logging.getLogger(__name__)

HEADS_DIR = "heads"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class HeadError(ValueError):
    """A head cannot be trained or loaded; the message says what to change."""


@dataclass
class Head:
    name: str
    classes: list[str]
    weights: np.ndarray  # (D, C)
    bias: np.ndarray  # (C,)
    backbone: str
    dim: int
    search_weight: float = 1.0
    metrics: dict = field(default_factory=dict)
    val_ids: list[int] = field(default_factory=list)
    created: str = ""
    labels_source: str = "label column"

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """(n, D) embeddings -> (n, C) logits."""
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise ValueError(f"head {self.name} takes vectors of dimension {self.dim}, got shape {v.shape}")
        return v @ self.weights + self.bias

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        """(n, D) embeddings -> (n, C) class probabilities (softmax)."""
        z = self.logits(vectors)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def top(self, vectors: np.ndarray, top: int = 5) -> list[list[tuple[str, float]]]:
        """Best ``top`` (class, probability) pairs for each vector."""
        p = self.predict_proba(vectors)
        order = np.argsort(-p, axis=1)[:, :top]
        return [[(self.classes[j], float(row[j])) for j in idx] for row, idx in zip(p, order)]

    def augment(self, search_vectors: np.ndarray, raw_vectors: np.ndarray) -> np.ndarray:
        """Head-aware search vectors: [e ; w * p / |p|], re-normalised: (n, D) -> (n, D + C)."""
        p = l2_normalize(self.predict_proba(raw_vectors))  # (n, C)
        return l2_normalize(np.hstack([search_vectors, self.search_weight * p]))


# ---------------------------------------------------------------- storage


def heads_root(index_dir) -> Path:
    return Path(index_dir) / HEADS_DIR


def list_heads(index_dir) -> list[str]:
    root = heads_root(index_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "head.json").is_file())


def save_head(index_dir, head: Head) -> Path:
    """Write a head atomically (into a temp folder, then rename over the old one)."""
    root = heads_root(index_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{head.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    np.savez(tmp / "head.npz", weights=head.weights.astype(np.float32), bias=head.bias.astype(np.float32))
    meta = {"name": head.name, "classes": head.classes, "backbone": head.backbone, "dim": head.dim,
            "search_weight": head.search_weight, "metrics": head.metrics, "val_ids": head.val_ids,
            "created": head.created, "labels_source": head.labels_source, "format_version": 1}
    (tmp / "head.json").write_text(json.dumps(meta, indent=2))
    final = root / head.name
    old = root / f".{head.name}.{os.getpid()}.old"
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_head(index_dir, name: str, manifest: dict | None = None) -> Head:
    """Load head ``name``; refuses a head trained for another backbone or dimension."""
    folder = heads_root(index_dir) / name
    if not NAME_PATTERN.match(name) or not (folder / "head.json").is_file():
        available = ", ".join(list_heads(index_dir)) or "none; train one with 'imgsearch train-head'"
        raise HeadError(f"no head named {name!r} in {index_dir} (available: {available})")
    meta = json.loads((folder / "head.json").read_text())
    with np.load(folder / "head.npz") as arrays:
        weights, bias = arrays["weights"], arrays["bias"]
    head = Head(meta["name"], meta["classes"], weights, bias, meta["backbone"], meta["dim"],
                meta.get("search_weight", 1.0), meta.get("metrics", {}), meta.get("val_ids", []),
                meta.get("created", ""), meta.get("labels_source", ""))
    manifest = manifest or EmbeddingStore(index_dir).read_manifest()
    if head.backbone != manifest["backbone"]["name"] or head.dim != manifest["dim"]:
        raise HeadError(
            f"head {name!r} was trained on {head.backbone} embeddings (dimension {head.dim}), but "
            f"{index_dir} holds {manifest['backbone']['name']} embeddings (dimension {manifest['dim']}); "
            f"retrain it here with 'imgsearch train-head --index {index_dir} --name {name}'"
        )
    if weights.shape != (head.dim, len(head.classes)) or bias.shape != (len(head.classes),):
        raise HeadError(f"head {name!r} in {index_dir} is damaged: weights {weights.shape}, "
                        f"{len(head.classes)} classes; retrain it")
    return head


# ---------------------------------------------------------------- labels


def read_labels_csv(path, table_paths: list[str]) -> dict[str, str]:
    """CSV with columns path,label -> {stored path: label}.

    Paths may be absolute or relative to the CSV's folder; rows naming images
    that are not in the index are reported, not silently dropped.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise HeadError(f"{path}: the CSV needs a header with columns 'path' and 'label'")
            rows = list(reader)
    except OSError as exc:
        raise HeadError(f"cannot read labels file {path}: {exc.strerror or exc}") from exc
    known = set(table_paths)
    labels, missing = {}, []
    for row in rows:
        p = row["path"].strip()
        full = p if os.path.isabs(p) else os.path.abspath(os.path.join(path.parent, p))
        if full not in known:
            missing.append(p)
            continue
        if row["label"].strip():
            labels[full] = row["label"].strip()
    if missing:
        log.warning("%d rows of %s name images not in the index (first: %s)", len(missing), path, missing[0])
    if not labels:
        raise HeadError(f"{path}: no row names an indexed image; paths must be absolute or relative to the CSV")
    return labels


# ---------------------------------------------------------------- training


@dataclass(frozen=True)
class HeadTrainingConfig:
    val_fraction: float = 0.2  # held out, only for the reported metrics
    stop_fraction: float = 0.15  # of the training part, watched by early stopping
    seed: int = 0
    max_epochs: int = 200
    patience: int = 10
    batch_size: int = 256
    learning_rate: float = 1e-3
    l2: float = 1e-4
    search_weight: float = 1.0
    knn_k: int = 10


def stratified_split(y: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held) with ``fraction`` held out, stratified when every class allows it."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    held = max(int(round(fraction * len(y))), 1)
    counts = np.unique(y, return_counts=True)[1]
    stratify = y if counts.min() >= 2 and held >= len(counts) and len(y) - held >= len(counts) else None
    keep, out = train_test_split(idx, test_size=held, stratify=stratify, random_state=seed)
    return np.sort(keep), np.sort(out)


def fit_softmax(x_train, y_train, n_classes: int, config: HeadTrainingConfig):
    """Train a softmax layer with class weighting and early stopping.

    x (n, D) float32, y (n,) int class indices -> (weights (D, C), bias (C,), epochs run).
    Early stopping watches the loss on a stratified ``stop_fraction`` of the
    training data, never on the caller's held-out split.  Inputs are
    standardised for fast, well-conditioned training; the scaling is folded
    back into the returned weights, so they apply to raw embeddings.
    """
    import keras
    from sklearn.utils.class_weight import compute_class_weight

    keras.utils.set_random_seed(config.seed)
    fit_idx, stop_idx = stratified_split(y_train, config.stop_fraction, config.seed)
    mean = x_train[fit_idx].mean(axis=0)  # (D,)
    std = x_train[fit_idx].std(axis=0)  # (D,)
    # a floor keeps features that barely vary in a small training set from being blown up
    std = np.maximum(std, np.median(std)).astype(np.float32)
    z = (x_train - mean) / std  # (n, D)
    present = np.unique(y_train[fit_idx])
    cw = compute_class_weight("balanced", classes=present, y=y_train[fit_idx])
    model = keras.Sequential([
        keras.Input((x_train.shape[1],)),
        keras.layers.Dense(n_classes, kernel_regularizer=keras.regularizers.L2(config.l2)),  # logits
    ])
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=16)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience, restore_best_weights=True)
    # small sets get small batches, so every epoch still takes several optimiser steps
    batch_size = int(min(config.batch_size, max(8, len(fit_idx) // 8)))
    history = model.fit(z[fit_idx], y_train[fit_idx], validation_data=(z[stop_idx], y_train[stop_idx]),
                        epochs=config.max_epochs, batch_size=batch_size, verbose=0, shuffle=True,
                        class_weight={int(c): float(w) for c, w in zip(present, cw)}, callbacks=[stop])
    w, b = model.layers[-1].get_weights()  # (D, C), (C,) on standardised inputs
    weights = (w / std[:, None]).astype(np.float32)
    bias = (b - (mean / std) @ w).astype(np.float32)
    return weights, bias, len(history.history["loss"])


def knn_vote(train_vectors, train_labels, query_vectors, k: int = 10, exclude_self: bool = False):
    """Similarity-weighted k-nearest-neighbour vote: the baseline every head is compared with.

    train (n, D), labels (n,) ints, queries (q, D) -> (q,) predicted labels.
    With ``exclude_self`` the queries are the training vectors (leave-one-out).
    """
    from .faiss_index import build_flat_index, search_index

    train_labels = np.asarray(train_labels)
    index = build_flat_index(np.arange(len(train_vectors), dtype=np.int64), train_vectors)
    kk = min(k + exclude_self, len(train_vectors))
    scores, nn = search_index(index, query_vectors, kk)  # (q, kk)
    if exclude_self:
        keep = nn != np.arange(len(query_vectors))[:, None]
        scores = np.array([s[m][:k] for s, m in zip(scores, keep)])
        nn = np.array([n[m][:k] for n, m in zip(nn, keep)])
    n_classes = int(train_labels.max()) + 1
    votes = np.zeros((len(query_vectors), n_classes))
    np.add.at(votes, (np.arange(len(nn))[:, None], train_labels[nn]), np.maximum(scores, 0) + 1e-6)
    return votes.argmax(axis=1)


def classification_metrics(y_true, y_pred, classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = np.arange(len(classes))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    support = np.bincount(y_true, minlength=len(classes))
    worst = sorted((i for i in labels if support[i]), key=lambda i: per_class[i])[:5]
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels[support > 0], average="macro", zero_division=0)),
        "per_class_f1": {classes[i]: float(per_class[i]) for i in labels},
        "worst_classes": [{"class": classes[i], "f1": float(per_class[i]), "support": int(support[i])}
                          for i in worst],
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def labelled_embeddings(index_dir, labels_csv=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Stored ids (n,), embeddings (n, D) and string labels (n,) of the labelled images."""
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    table = store.read_table(manifest["shards"], ["id", "path", "label", "embedding"])
    ids = table.column("id").to_numpy()
    vectors = embeddings_of(table)
    if labels_csv:
        mapping = read_labels_csv(labels_csv, table.column("path").to_pylist())
        labels = np.array([mapping.get(p, "") for p in table.column("path").to_pylist()], dtype=object)
        source = f"csv {labels_csv}"
    else:
        labels = np.array(table.column("label").to_pylist(), dtype=object)
        source = "label column (parent folders)"
    keep = labels != ""
    if not keep.any():
        raise HeadError(f"no image in {index_dir} has a label: index folders of class sub-folders, "
                        "or pass --labels FILE.csv with columns path,label")
    return ids[keep], vectors[keep], labels[keep].astype(str), source


def train_head(index_dir, name: str, *, labels_csv=None,
               config: HeadTrainingConfig = HeadTrainingConfig()) -> Head:
    """Train head ``name`` on the index's stored embeddings and save it inside the index folder."""
    if not NAME_PATTERN.match(name):
        raise HeadError(f"head name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    if not 0 < config.val_fraction < 1:
        raise HeadError(f"the validation fraction must be between 0 and 1, got {config.val_fraction}")
    manifest = EmbeddingStore(index_dir).read_manifest()
    ids, vectors, labels, source = labelled_embeddings(index_dir, labels_csv)
    classes, y = np.unique(labels, return_inverse=True)
    counts = np.bincount(y)
    if len(classes) < 2:
        raise HeadError(f"a head needs at least 2 classes; the labels hold only {classes.tolist()}")
    if counts.min() < 2:
        small = [str(c) for c, n in zip(classes, counts) if n < 2]
        raise HeadError(f"classes {small[:5]} have a single image; a stratified split needs at least 2 "
                        "per class: add images or drop those labels")
    if len(y) * min(config.val_fraction, 1 - config.val_fraction) < len(classes):
        raise HeadError(f"{len(y)} labelled images are too few for a stratified split of {len(classes)} "
                        f"classes with --val-fraction {config.val_fraction}")
    train_idx, val_idx = stratified_split(y, config.val_fraction, config.seed)
    started = time.perf_counter()
    weights, bias, epochs = fit_softmax(vectors[train_idx], y[train_idx], len(classes), config)
    seconds = time.perf_counter() - started
    head = Head(name, classes.tolist(), weights, bias, manifest["backbone"]["name"], manifest["dim"],
                config.search_weight, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), labels_source=source,
                val_ids=ids[val_idx].tolist())
    predicted = head.predict_proba(vectors[val_idx]).argmax(axis=1)
    knn = knn_vote(vectors[train_idx], y[train_idx], vectors[val_idx], config.knn_k)
    head.metrics = {
        "validation": classification_metrics(y[val_idx], predicted, head.classes),
        "knn_validation": classification_metrics(y[val_idx], knn, head.classes),
        "knn_k": config.knn_k,
        "train_images": int(len(train_idx)),
        "val_images": int(len(val_idx)),
        "epochs": epochs,
        "train_seconds": round(seconds, 2),
    }
    save_head(index_dir, head)
    build_head_index(index_dir, head, manifest)
    return head


# ---------------------------------------------------------------- head-aware search index


def build_head_index(index_dir, head: Head, manifest: dict) -> str:
    """(Re)build the head-aware FAISS index over the manifest's shards; returns its file name.

    Shard by shard, like the main index: peak memory is the index plus one shard.
    """
    import faiss

    from .faiss_index import add_to_index, new_flat_index
    from .whitening import search_space

    store = EmbeddingStore(index_dir)
    search_dim = manifest.get("search_dim", manifest["dim"])
    index = new_flat_index(search_dim + len(head.classes))
    for shard in manifest["shards"]:
        table = store.read_table([shard], ["id", "embedding"])
        raw = embeddings_of(table)  # (s, D)
        add_to_index(index, table.column("id").to_numpy(),
                     head.augment(search_space(raw, index_dir, manifest), raw))  # (s, d + C)
    path = head_index_path(index_dir, head.name, manifest)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)
    # keep the previous generation's: it is what is served until the manifest of this one is published
    generation = manifest.get("generation", 0)
    for old in path.parent.glob("search-*.faiss"):
        if old.stem[7:].isdigit() and int(old.stem[7:]) < generation - 1:
            old.unlink(missing_ok=True)
    return path.name


def head_index_path(index_dir, name: str, manifest: dict) -> Path:
    return heads_root(index_dir) / name / f"search-{manifest.get('generation', 0):06d}.faiss"
