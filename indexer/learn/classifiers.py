"""Fitting classifiers on embeddings: the softmax head, the kNN baseline, splits and metrics.

Pure functions of arrays: nothing here reads or writes an index folder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    model: str = "softmax"  # "softmax" (this module's fit_softmax) or "svm" (indexer/learn/fewshot.py)


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
    from imgsearch.indexer.vectors import build_flat_index, search_index

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
