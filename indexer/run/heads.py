"""Training a head on the stored embeddings and saving it into the index folder.

Transfer learning with a frozen CNN: the embeddings in the index are the
bottleneck features, computed once; the head trains on them in seconds.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path

import numpy as np

from imgsearch.indexer.folder.heads import NAME_PATTERN, Head, HeadError, save_head
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.manifest import backbone_name
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.folder.texts import display_text, texts_of
from imgsearch.indexer.learn.classifiers import (
    HeadTrainingConfig,
    classification_metrics,
    fit_softmax,
    knn_vote,
    stratified_split,
)
from imgsearch.indexer.learn.fewshot import check_model, fit_linear
from imgsearch.indexer.publish.head_indexes import head_search_index

log = logging.getLogger(__name__)


def read_labels_csv(path, table_paths: list[str]) -> dict[str, str]:
    """CSV with columns path,label -> {stored path: label}.

    Paths may be absolute or relative to the CSV's folder; rows naming images
    that are not in the index are reported, not silently dropped.  A path that
    is not UTF-8 is written as the name's bytes (read with surrogateescape).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise HeadError(f"{path}: the CSV needs a header with columns 'path' and 'label'")
            rows = list(reader)
    except OSError as exc:
        raise HeadError(f"cannot read labels file {path}: {exc.strerror or exc}") from exc
    known = set(table_paths)
    labels, missing = {}, []
    for row in rows:
        p = row["path"]  # exactly as written: spaces and quotes are part of a name
        full = p if os.path.isabs(p) else os.path.abspath(os.path.join(path.parent, p))
        if full not in known:
            missing.append(p)
            continue
        label = row["label"].strip()
        if label and labels.setdefault(full, label) != label:  # the same image twice: one label, or refused
            raise HeadError(f"{path}: {display_text(p)} is labelled both {labels[full]!r} and {label!r}; an image "
                            "teaches one class")
    if missing:
        log.warning("%d rows of %s name images not in the index (first: %s)", len(missing), path,
                    display_text(missing[0]))
    if not labels:
        raise HeadError(f"{path}: no row names an indexed image; paths must be absolute or relative to the CSV")
    return labels


def labelled_embeddings(index_dir, labels_csv=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Stored ids (n,), embeddings (n, D) and string labels (n,) of the labelled images.

    Labels are as shown (``display_text``): a head's classes are names a person and JSON read.
    """
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    table = store.read_table(manifest["shards"], ["id", "path", "label", "embedding"])
    ids = table.column("id").to_numpy()
    vectors = embeddings_of(table)
    if labels_csv:
        paths = texts_of(table, "path")
        mapping = read_labels_csv(labels_csv, paths)
        labels = np.array([display_text(mapping.get(p, "")) for p in paths], dtype=object)
        source = f"csv {labels_csv}"
    else:
        labels = np.array([display_text(label) for label in texts_of(table, "label")], dtype=object)
        source = "label column (parent folders)"
    keep = labels != ""
    if not keep.any():
        raise HeadError(f"no image in {index_dir} has a label: index folders of class sub-folders, "
                        "or pass --labels FILE.csv with columns path,label")
    return ids[keep], vectors[keep], labels[keep].astype(str), source


def train_head(index_dir, name: str, *, labels_csv=None,
               config: HeadTrainingConfig | None = None, wait: bool = True) -> Head:
    """Train head ``name`` on the index's stored embeddings and save it inside the index folder.

    ``config``: the training settings; None, the defaults.  Holds the folder's writer
    lock (``wait=False``: IndexLockedError at once if another writer has it).
    """
    config = config or HeadTrainingConfig()
    if not NAME_PATTERN.match(name):
        raise HeadError(f"head name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    check_model(config.model)
    if not 0 < config.val_fraction < 1:
        raise HeadError(f"the validation fraction must be between 0 and 1, got {config.val_fraction}")
    with writer_lock(index_dir, wait=wait):
        return _train(index_dir, name, labels_csv, config)


def _train(index_dir, name: str, labels_csv, config: HeadTrainingConfig) -> Head:
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
    calibration = {}
    if config.model == "svm":
        fit = fit_linear(vectors[train_idx], y[train_idx], "svm", seed=config.seed)
        weights, bias, epochs, calibration = fit.weights, fit.bias, 0, fit.calibration
    else:
        weights, bias, epochs = fit_softmax(vectors[train_idx], y[train_idx], len(classes), config)
    seconds = time.perf_counter() - started
    head = Head(name, classes.tolist(), weights, bias, backbone_name(manifest), manifest["dim"],
                config.search_weight, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), labels_source=source,
                val_ids=ids[val_idx].tolist(), model=config.model, calibration=calibration)
    predicted = head.predict_proba(vectors[val_idx]).argmax(axis=1)
    knn = knn_vote(vectors[train_idx], y[train_idx], vectors[val_idx], config.knn_k)
    head.metrics = {
        "validation": classification_metrics(y[val_idx], predicted, head.classes),
        "knn_validation": classification_metrics(y[val_idx], knn, head.classes),
        "knn_k": config.knn_k,
        "model": config.model,
        "examples_per_class": {c: int(n) for c, n in zip(head.classes, np.bincount(y[train_idx], minlength=len(classes)))},
        "train_images": int(len(train_idx)),
        "val_images": int(len(val_idx)),
        "epochs": epochs,
        "train_seconds": round(seconds, 2),
    }
    save_head(index_dir, head, head_search_index(index_dir, head, manifest), manifest)
    return head
