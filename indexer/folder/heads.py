"""Classification heads as stored in the index folder, and applying them to embeddings.

A head is a linear layer over the stored embeddings whose softmax gives the class
probabilities, learned by ``indexer.run.heads`` (a softmax layer, from labelled
folders), ``indexer.run.teach`` (a few-shot softmax or a temperature-calibrated
linear SVM, from examples) or ``indexer.spark.heads`` (Spark MLlib): head.json's
``model`` says which family ("softmax" if absent, as in heads written before it) and
``calibration`` how its probabilities were calibrated; every head is applied alike.  Heads live inside the index
folder, one sub-folder each::

    DIR/heads/NAME/head.npz     weights (D, C) and bias (C,)
    DIR/heads/NAME/head.json    classes, backbone, dim, metrics, validation ids
    DIR/heads/NAME/search-GEN.faiss   head-aware search index (indexer.publish.head_indexes)

Head-aware search appends the head's class probabilities, L2-normalised and
scaled by ``search_weight``, to each embedding (index and query alike) and
re-normalises, so similarity becomes
``(cos(e_q, e_i) + w^2 cos(p_q, p_i)) / (1 + w^2)``.
"""

from __future__ import annotations

import json
import logging
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imgsearch.indexer.atomic import atomic_folder, atomic_write_faiss, remove_folder
from imgsearch.indexer.errors import DamagedIndexError, InvalidInputError, NotFoundError, quote
from imgsearch.indexer.folder.manifest import backbone_name
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.vectors import l2_normalize

log = logging.getLogger(__name__)


HEADS_DIR = "heads"


NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class HeadError(InvalidInputError):
    """A head cannot be trained or loaded; the message says what to change."""


class UnknownHeadError(HeadError, NotFoundError):
    """No head of this name is in the index; the message lists those that are."""


class HeadDamagedError(HeadError, DamagedIndexError):
    """A head's files are there but unreadable or inconsistent: it must be retrained (or deleted)."""


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
    model: str = "softmax"  # the family that learned it: "softmax" or "svm" (indexer/learn/fewshot.py)
    calibration: dict = field(default_factory=dict)  # e.g. {"method": "temperature", "temperature": T}

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


def heads_root(index_dir) -> Path:
    return Path(index_dir) / HEADS_DIR


def list_heads(index_dir) -> list[str]:
    root = heads_root(index_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "head.json").is_file())


def save_head(index_dir, head: Head, search_index=None, manifest: dict | None = None) -> Path:
    """Write a head atomically (into a temp folder, then rename over the old one).

    ``search_index``: its head-aware FAISS index for the version ``manifest``, written in the same
    folder, so a reader never finds the new head without its index.
    """
    root = heads_root(index_dir)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"name": head.name, "classes": head.classes, "backbone": head.backbone, "dim": head.dim,
            "search_weight": head.search_weight, "metrics": head.metrics, "val_ids": head.val_ids,
            "created": head.created, "labels_source": head.labels_source, "format_version": 1,
            "model": head.model, "calibration": head.calibration}
    final = root / head.name
    with atomic_folder(final) as tmp:
        np.savez(tmp / "head.npz", weights=head.weights.astype(np.float32), bias=head.bias.astype(np.float32))
        (tmp / "head.json").write_text(json.dumps(meta, indent=2))
        if search_index is not None:
            atomic_write_faiss(tmp / head_index_path(index_dir, head.name, manifest).name, search_index)
    return final


def delete_head(index_dir, name: str) -> None:
    """Remove head ``name``'s folder: renamed aside in one step (readers see it or nothing), then deleted."""
    folder = heads_root(index_dir) / name
    if not NAME_PATTERN.match(name) or not (folder / "head.json").is_file():
        available = ", ".join(list_heads(index_dir)) or "none"
        raise UnknownHeadError(f"no head named {quote(name)} in {index_dir} (available: {available})")
    remove_folder(folder)


def load_head(index_dir, name: str, manifest: dict | None = None) -> Head:
    """Load head ``name``; refuses a head trained for another backbone or dimension.

    HeadError for an unknown name; HeadDamagedError, naming the file, for any damage.
    """
    folder = heads_root(index_dir) / name
    if not NAME_PATTERN.match(name) or not (folder / "head.json").is_file():
        available = ", ".join(list_heads(index_dir)) or "none; train one with 'imgsearch train-head'"
        raise UnknownHeadError(f"no head named {quote(name)} in {index_dir} (available: {available})")

    def damaged(why: str) -> HeadDamagedError:
        return HeadDamagedError(f"head {name!r} in {index_dir} is damaged: {why}; retrain it with "
                                f"'imgsearch train-head --index {index_dir} --name {name}' (or delete {folder})")

    try:
        meta = json.loads((folder / "head.json").read_bytes())
    except (OSError, ValueError) as exc:
        raise damaged(f"head.json is not readable JSON ({str(exc)[:100]})") from None
    fields = {"name": str, "classes": list, "backbone": str, "dim": int}
    if not isinstance(meta, dict) or any(not isinstance(meta.get(f), t) or isinstance(meta.get(f), bool)
                                         for f, t in fields.items()):
        raise damaged("head.json lacks name, classes, backbone or dim of the right types")
    if not all(isinstance(c, str) for c in meta["classes"]) or len(meta["classes"]) < 2:
        raise damaged("head.json's classes are not a list of at least 2 names")
    try:
        with np.load(folder / "head.npz", allow_pickle=False) as arrays:
            weights, bias = np.asarray(arrays["weights"], np.float32), np.asarray(arrays["bias"], np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise damaged(f"head.npz is unreadable ({type(exc).__name__}: {str(exc)[:100]})") from None
    search_weight = meta.get("search_weight", 1.0)
    if isinstance(search_weight, bool) or not isinstance(search_weight, (int, float)):
        raise damaged("head.json's search_weight is not a number")
    head = Head(meta["name"], meta["classes"], weights, bias, meta["backbone"], meta["dim"],
                float(search_weight), meta.get("metrics") or {}, meta.get("val_ids") or [],
                str(meta.get("created", "")), str(meta.get("labels_source", "")),
                str(meta.get("model", "softmax")), dict(meta.get("calibration") or {}))
    manifest = manifest or EmbeddingStore(index_dir).read_manifest()
    if head.backbone != backbone_name(manifest) or head.dim != manifest["dim"]:
        raise HeadError(
            f"head {name!r} was trained on {head.backbone} embeddings (dimension {head.dim}), but "
            f"{index_dir} holds {backbone_name(manifest)} embeddings (dimension {manifest['dim']}); "
            f"retrain it here with 'imgsearch train-head --index {index_dir} --name {name}'"
        )
    if weights.shape != (head.dim, len(head.classes)) or bias.shape != (len(head.classes),):
        raise damaged(f"weights {weights.shape} and bias {bias.shape} do not fit {len(head.classes)} classes "
                      f"of dimension {head.dim}")
    if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
        raise damaged("its weights are not all finite numbers")
    return head


def head_index_path(index_dir, name: str, manifest: dict) -> Path:
    return heads_root(index_dir) / name / f"search-{manifest.get('generation', 0):06d}.faiss"
