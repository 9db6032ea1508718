"""Retrieval quality measured on an index whose images carry labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.folder.manifest import backbone_name
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.folder.texts import display_text, texts_of
from imgsearch.indexer.vectors import build_flat_index, search_index


@dataclass
class PrecisionReport:
    k: int
    images: int
    labels: int
    precision: float  # mean over queries of (neighbours sharing the query's label) / k
    per_label: dict[str, float]

    def to_dict(self) -> dict:
        return {"k": self.k, "images": self.images, "labels": self.labels,
                "precision_at_k": self.precision, "per_label": self.per_label}


def leave_one_out_precision(vectors: np.ndarray, labels, k: int = 10) -> PrecisionReport:
    """Leave-one-out precision@k with exact cosine search.

    vectors (n, D) unit rows, labels (n,).  Each image queries all the others:
    the query itself is excluded by id, not by rank, so exact duplicates count.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if len(vectors) != n:
        raise ValueError(f"{len(vectors)} vectors but {n} labels")
    if n <= k:
        raise InvalidInputError(f"need more than k={k} images, got {n}")
    ids = np.arange(n, dtype=np.int64)
    _, nn = search_index(build_flat_index(ids, vectors), vectors, k + 1)  # (n, k+1)
    keep = nn != ids[:, None]
    # drop the query wherever it landed; if it was not retrieved, drop the last neighbour
    nn = np.array([row[m][:k] for row, m in zip(nn, keep)])  # (n, k)
    hits = (labels[nn] == labels[:, None]).mean(axis=1)  # (n,)
    per_label = {str(c): float(hits[labels == c].mean()) for c in np.unique(labels)}
    return PrecisionReport(k, n, len(per_label), float(hits.mean()), per_label)


def display_labels(table) -> list[str]:
    """The ``label`` column as the report shows it (``display_text``): distinct labels stay distinct."""
    return [display_text(label) for label in texts_of(table, "label")]


def index_precision(index_dir, k: int = 10) -> PrecisionReport:
    """Leave-one-out precision@k of a published index, by its ``label`` column."""
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], ["label", "embedding"])
    return leave_one_out_precision(embeddings_of(table), np.array(display_labels(table), dtype=object), k)


def retrieval_metrics(vectors: np.ndarray, labels, max_k: int = 50, max_queries: int = 5000,
                      seed: int = 0) -> dict:
    """Leave-one-out precision@1..max_k, mAP and per-label figures, with exact cosine similarity.

    vectors (n, D) unit rows, labels (n,).  Above ``max_queries`` images a
    seeded sample of queries is used (every image still takes part as a neighbour).
    """
    labels = np.asarray(labels).astype(str)
    n = len(labels)
    if n < 3:
        raise InvalidInputError(f"need at least 3 labelled images, got {n}")
    max_k = min(max_k, n - 1)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n, max_queries, replace=False)) if n > max_queries else np.arange(n)
    prec = np.zeros((len(queries), max_k))  # (q, K): precision@k per query
    ap = np.zeros(len(queries))
    for start in range(0, len(queries), 512):
        q = queries[start:start + 512]
        sims = vectors[q] @ vectors.T  # (b, n)
        sims[np.arange(len(q)), q] = -np.inf  # leave the query out
        order = np.argsort(-sims, axis=1)[:, : n - 1]  # (b, n-1)
        rel = labels[order] == labels[q][:, None]  # (b, n-1)
        cum = np.cumsum(rel, axis=1)
        prec[start:start + len(q)] = cum[:, :max_k] / np.arange(1, max_k + 1)
        n_rel = rel.sum(axis=1)
        ranks = np.arange(1, n)
        ap[start:start + len(q)] = np.where(n_rel > 0, (rel * cum / ranks).sum(axis=1) / np.maximum(n_rel, 1), 0)
    qlabels = labels[queries]
    k10 = min(10, max_k) - 1
    per_label = {
        str(c): {"images": int((labels == c).sum()), "precision_at_1": float(prec[qlabels == c, 0].mean()),
                 "precision_at_10": float(prec[qlabels == c, k10].mean()), "ap": float(ap[qlabels == c].mean())}
        for c in np.unique(qlabels)
    }
    return {"images": n, "queries": int(len(queries)), "labels": int(len(np.unique(labels))),
            "k": list(range(1, max_k + 1)), "precision_curve": prec.mean(axis=0).tolist(),
            "precision_at_1": float(prec[:, 0].mean()), "precision_at_10": float(prec[:, k10].mean()),
            "map": float(ap.mean()), "per_label": per_label}


def knn_loo_accuracy(vectors: np.ndarray, labels, k: int = 10) -> float:
    """Leave-one-out accuracy of the similarity-weighted kNN vote over the whole index."""
    from imgsearch.indexer.learn.classifiers import knn_vote

    classes, y = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    return float((knn_vote(vectors, y, vectors, k, exclude_self=True) == y).mean())


def head_aware_precision(vectors: np.ndarray, labels, *, weights=(1.0,), k: int = 10, seed: int = 0) -> dict:
    """Head trained on one half, retrieval scored on the other half, with and without the head.

    Returns {"plain": p@k, "head": {weight: p@k}, "head_accuracy": acc on the scored half}.
    """
    from imgsearch.indexer.folder.heads import Head
    from imgsearch.indexer.learn.classifiers import (
        HeadTrainingConfig,
        fit_softmax,
        stratified_split,
    )
    from imgsearch.indexer.vectors import l2_normalize

    classes, y = np.unique(np.asarray(labels).astype(str), return_inverse=True)
    train, test = stratified_split(y, 0.5, seed)
    config = HeadTrainingConfig(seed=seed)
    w, b, _ = fit_softmax(vectors[train], y[train], len(classes), config)
    head = Head("half", classes.tolist(), w, b, "", vectors.shape[1])
    scored = vectors[test]
    out = {"plain": leave_one_out_precision(scored, y[test], k).precision, "head": {},
           "head_accuracy": float((head.predict_proba(scored).argmax(axis=1) == y[test]).mean()),
           "train_images": int(len(train)), "scored_images": int(len(test))}
    for weight in weights:
        head.search_weight = weight
        aug = head.augment(l2_normalize(scored), scored)
        out["head"][float(weight)] = leave_one_out_precision(aug, y[test], k).precision
    return out


def whitening_precision(vectors: np.ndarray, labels, *, dims=(None,), k: int = 10) -> dict:
    """p@k without whitening and with PCA-whitening learned on the same vectors, per kept dimension."""
    from imgsearch.indexer.learn.whitening import learn_whitening
    from imgsearch.indexer.vectors import l2_normalize

    out = {"off": leave_one_out_precision(vectors, labels, k).precision, "on": {}}
    for dim in dims:
        wh = learn_whitening(vectors, dim)
        out["on"][wh.dim] = leave_one_out_precision(l2_normalize(wh.apply(vectors)), labels, k).precision
    return out


def evaluate_index(index_dir, *, max_k: int = 50, knn_k: int = 10) -> dict:
    """Everything `imgsearch evaluate` reports, as plain JSON-able data.

    retrieval: leave-one-out precision@1..max_k, mAP, per label (search space
    of the index, so whitening counts if it is on); knn: leave-one-out kNN-vote
    accuracy; heads: each head's accuracy, macro-F1 and confusion matrix on its
    own held-out validation images, beside kNN on the same split.
    """
    from imgsearch.indexer.folder.heads import list_heads, load_head
    from imgsearch.indexer.folder.whitening import search_space
    from imgsearch.indexer.learn.classifiers import classification_metrics, knn_vote

    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    table = store.read_table(manifest["shards"], ["id", "path", "label", "embedding"])
    ids = table.column("id").to_numpy()
    raw = embeddings_of(table)
    labels = np.array(display_labels(table), dtype=object).astype(str)
    labelled = labels != ""
    results = {
        "index": {"dir": str(index_dir), "backbone": backbone_name(manifest), "images": int(len(ids)),
                  "labelled_images": int(labelled.sum()), "whitening": manifest.get("whitening")},
        "retrieval": None, "knn": None, "heads": {},
    }
    if labelled.sum() >= 3 and len(np.unique(labels[labelled])) >= 2:
        space = search_space(raw[labelled], index_dir, manifest)
        results["retrieval"] = retrieval_metrics(space, labels[labelled], max_k)
        results["knn"] = {"k": knn_k, "accuracy": knn_loo_accuracy(space, labels[labelled], knn_k)}
    row_of = {int(i): r for r, i in enumerate(ids)}
    for name in list_heads(index_dir):
        head = load_head(index_dir, name, manifest)
        entry = {"classes": head.classes, "labels_source": head.labels_source, "trained": head.metrics,
                 # labels from a CSV are not in the index: report the figures measured at training time
                 "validation": head.metrics.get("validation"),
                 "knn_validation": head.metrics.get("knn_validation")}
        class_of = {c: j for j, c in enumerate(head.classes)}
        if head.labels_source.startswith("label"):
            val_rows = np.array([row_of[i] for i in head.val_ids if i in row_of and labels[row_of[i]] in class_of],
                                dtype=int)
            known = np.array([lab in class_of for lab in labels])
            known[val_rows] = False
            train_rows = np.flatnonzero(known)
            if len(val_rows) and len(train_rows):
                y = np.array([class_of[lab] for lab in labels[val_rows]])
                ytr = np.array([class_of[lab] for lab in labels[train_rows]])
                pred = head.predict_proba(raw[val_rows]).argmax(axis=1)
                knn = knn_vote(raw[train_rows], ytr, raw[val_rows], knn_k)
                entry["validation"] = classification_metrics(y, pred, head.classes)
                entry["knn_validation"] = classification_metrics(y, knn, head.classes)
        results["heads"][name] = entry
    return results
