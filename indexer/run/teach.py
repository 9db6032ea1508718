"""Teaching a head from examples: a handful of indexed images (or vectors) per class, trained in seconds.

``train_head_from_examples(DIR, name, {"classic": [3, 17, "/photos/a.jpg"], "modern": [...]})``
reads the examples' stored embeddings, fits a few-shot head (``indexer/learn/fewshot.py``:
softmax or a calibrated linear SVM) on all of them, measures what the examples allow by
cross-validation, and saves the head with its head-aware search index in one atomic
step, holding the folder's writer lock.  ``remove_head`` deletes one, under the lock too.

An example is an indexed id (an int, or ``{"id": 3}``), an indexed image's path (a
string, or ``{"path": ...}``: as stored, or relative to ``base``) or an embedding
(``{"vector": [D numbers]}``, e.g. of an image that is not indexed).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imgsearch.indexer.errors import InvalidFieldError, InvalidInputError, NotFoundError, quote
from imgsearch.indexer.folder.heads import NAME_PATTERN, Head, HeadError, delete_head, save_head
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.manifest import backbone_name
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.learn.fewshot import (
    DEFAULT_MODEL,
    check_model,
    cross_validated,
    fit_linear,
)
from imgsearch.indexer.publish.head_indexes import head_search_index
from imgsearch.indexer.numbers import loads
from imgsearch.indexer.vectors import l2_normalize

log = logging.getLogger(__name__)

MAX_EXAMPLES = 5000  # in one training from examples, all classes together
MAX_CLASSES = 200
MAX_CLASS_NAME = 200  # characters


class UnknownExampleError(HeadError, NotFoundError):
    """An example names an id or a path that is not in the index."""


def check_head_name(name) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise HeadError(f"head name {quote(name)}: use letters, digits, '.', '_' or '-' (at most 64), starting "
                        "with a letter or digit")
    return name


def read_examples_file(path) -> dict:
    """A JSON file {class: [examples]} (``-``: standard input) -> the dict, or HeadError saying what is wrong."""
    import sys

    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
        examples = loads(text)
    except InvalidFieldError as exc:  # NaN, 1e400, a 400-digit id, a class given twice
        raise HeadError(f"examples file {path}: {exc}") from None
    except OSError as exc:
        raise HeadError(f"cannot read examples file {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise HeadError(f"examples file {path} is not JSON: {exc}") from None
    return examples


def check_examples(examples) -> dict[str, list]:
    """{class name: non-empty list} with at least 2 classes and at most MAX_EXAMPLES in all."""
    if not isinstance(examples, dict):
        raise HeadError('examples must be an object of class name -> list of examples, such as '
                        f'{{"cats": [3, 17], "dogs": [5]}}, got {quote(examples, 60)}')
    if len(examples) < 2:
        raise HeadError(f"a head needs at least 2 classes, got {len(examples)}: {quote(list(examples))}")
    if len(examples) > MAX_CLASSES:
        raise HeadError(f"a head may have at most {MAX_CLASSES} classes, got {len(examples)}")
    total = 0
    for cls, items in examples.items():
        if not isinstance(cls, str) or not cls.strip() or len(cls) > MAX_CLASS_NAME:
            raise HeadError(f"class name {quote(cls)}: a non-empty name of at most {MAX_CLASS_NAME} characters")
        if not isinstance(items, list):
            raise HeadError(f"class {cls!r}: its examples must be a list (ids, paths or {{\"vector\": [...]}}), "
                            f"got {quote(items, 60)}")
        if not items:
            raise HeadError(f"class {cls!r} has no examples: give it at least one, or leave the class out")
        total += len(items)
    if total > MAX_EXAMPLES:
        raise HeadError(f"at most {MAX_EXAMPLES} examples in all, got {total}: train from a labels file "
                        "(imgsearch train-head --labels) for more")
    return examples


def _kind_of(item, where: str) -> tuple[str, object]:
    if isinstance(item, dict):
        given = [k for k in ("id", "path", "vector") if k in item]
        if len(given) != 1 or len(item) != 1:
            raise HeadError(f"{where}: an example object has exactly one of id, path, vector, got {quote(item, 60)}")
        item = item[given[0]]
        kind = given[0]
    elif isinstance(item, bool):
        kind = "bad"
    elif isinstance(item, int):
        kind = "id"
    elif isinstance(item, str):
        kind = "path"
    else:
        kind = "bad"
    if kind == "id" and (isinstance(item, bool) or not isinstance(item, int)) or kind == "path" and not (
            isinstance(item, str) and item):
        kind = "bad"
    if kind == "bad":
        raise HeadError(f"{where}: an example is an indexed id, an indexed image's path or {{\"vector\": [...]}}, "
                        f"got {quote(item, 60)}")
    return kind, item


@dataclass
class ExampleSet:
    """The examples as trained on: one row per image (a repeat, by id, path or the same vector, collapses
    to its first), so no image is counted twice or split across cross-validation folds."""

    classes: list[str]
    x: np.ndarray  # (n, D) unit vectors
    y: np.ndarray  # (n,) class indices
    ids: list[int]  # the indexed examples' ids
    given: int  # examples as given, repeats included
    repeats: int  # examples dropped as repeats of one given before (in the same class)


def examples_embeddings(index_dir, examples: dict, manifest: dict, base=None) -> ExampleSet:
    """The examples' unit embeddings, one per image: an id, path or vector given again for the same class is
    dropped (and counted); one given for two classes is refused, naming it."""
    store = EmbeddingStore(index_dir)
    table = store.read_table(manifest["shards"], ["id", "path", "embedding"])
    row_of = {int(i): r for r, i in enumerate(table.column("id").to_numpy())}
    path_row = {p: r for r, p in enumerate(texts_of(table, "path"))}
    stored = embeddings_of(table)  # (N, D)
    classes = list(examples)
    rows, y, ids, given = [], [], [], 0
    seen: dict[object, tuple[str, str]] = {}  # an image's key -> (its class, how it was first named)
    for c, cls in enumerate(classes):
        for i, item in enumerate(examples[cls]):
            where = f"examples[{cls!r}][{i}]"
            given += 1
            kind, value = _kind_of(item, where)
            if kind == "vector":
                vector = l2_normalize(_checked_vector(value, manifest["dim"], where)[None])[0]
                key, named = ("vector", vector.tobytes()), "this vector"
            else:
                row = _row_of(kind, value, row_of, path_row, base, where)
                vector = stored[row]
                key = ("id", int(table.column("id")[row].as_py()))
                named = f"image {key[1]}"
            if key in seen:
                first_cls, first = seen[key]
                if first_cls != cls:
                    raise HeadError(f"{where}: {named} is an example of both {first_cls!r} ({first}) and {cls!r}; "
                                    "an image teaches one class")
                continue  # a repeat: counted once, so it is never on both sides of a fold
            seen[key] = (cls, where)
            rows.append(vector)
            y.append(c)
            if key[0] == "id":
                ids.append(key[1])
    return ExampleSet(classes, l2_normalize(np.stack(rows)), np.asarray(y, np.int64), ids, given, given - len(rows))


def _row_of(kind: str, value, row_of: dict, path_row: dict, base, where: str) -> int:
    if kind == "id":
        row = row_of.get(value)
        if row is None:
            raise UnknownExampleError(f"{where}: no image with id {value} in the index")
        return row
    full = value if os.path.isabs(value) or base is None else os.path.abspath(os.path.join(base, value))
    row = path_row.get(full)
    if row is None:
        raise UnknownExampleError(f"{where}: {quote(value)} is not an indexed image (paths as stored, or relative "
                                  "to the examples file)")
    return row


def _checked_vector(value, dim: int, where: str) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        v = None
    if v is None or v.shape != (dim,) or not np.isfinite(v).all() or not np.linalg.norm(v) > 0:
        raise InvalidInputError(f"{where}: a vector is {dim} finite numbers, not all zero")
    return v


def train_head_from_examples(index_dir, name: str, examples: dict, *, model: str = DEFAULT_MODEL,
                             search_weight: float = 1.0, seed: int = 0, wait: bool = True, base=None) -> Head:
    """Train head ``name`` from ``examples`` (class -> list of examples) and save it in the index folder.

    All the examples train the head; its metrics are cross-validated on them (``fewshot.cross_validated``),
    with the examples each class had and warnings.  Holds the writer lock (``wait=False``: IndexLockedError
    at once if another writer has it).  ``base``: the folder relative paths are relative to.
    """
    check_head_name(name)
    check_model(model)
    check_examples(examples)
    if isinstance(search_weight, bool) or not isinstance(search_weight, (int, float)) or not 0 <= search_weight <= 10:
        raise InvalidInputError(f"search_weight must be a number from 0 to 10, got {quote(search_weight)}")
    with writer_lock(index_dir, wait=wait):
        manifest = EmbeddingStore(index_dir).read_manifest()
        taught = examples_embeddings(index_dir, examples, manifest, base)
        classes, x, y, ids = taught.classes, taught.x, taught.y, taught.ids
        started = time.perf_counter()
        fit = fit_linear(x, y, model, seed=seed)
        seconds = time.perf_counter() - started
        report = cross_validated(x, y, classes, model, seed=seed)
        head = Head(name, classes, fit.weights, fit.bias, backbone_name(manifest), manifest["dim"],
                    float(search_weight), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    labels_source=f"examples ({len(y)}, {len(ids)} of them indexed images)", model=model,
                    calibration=fit.calibration)
        head.metrics = dict(report, model=model, train_images=int(len(y)), val_images=report["measured_examples"],
                            train_seconds=round(seconds, 3), example_ids=ids,
                            examples_given=taught.given, repeats_dropped=taught.repeats)
        if taught.repeats:
            log.info("head %s: %d of the %d examples given were repeats of an image already given, counted once",
                     name, taught.repeats, taught.given)
        for warning in report["warnings"]:
            log.warning("head %s: %s", name, warning)
        save_head(index_dir, head, head_search_index(index_dir, head, manifest), manifest)
        return head


def remove_head(index_dir, name: str, *, wait: bool = True) -> None:
    """Delete head ``name`` from the index folder, holding the writer lock."""
    with writer_lock(index_dir, wait=wait):
        delete_head(index_dir, name)
