"""Queries of several examples: positives and negatives, each an indexed id, a vector, an image or a text
(words, embedded by the index's text tower: search/query/text.py), with an optional weight (default 1).

Two strategies:

- ``"rocchio"`` (the default): one query vector, the weighted mean of the positives minus
  ``NEGATIVE_WEIGHT`` times the weighted mean of the negatives (every example's embedding taken at
  unit length first), re-normalised.  A result's score is its cosine to that vector, in the index's
  search space like any query's.
- ``"best"``: each candidate is scored by its best positive, ``max(weight * cosine)`` over the
  positives (a cosine when the weights are 1).  Each positive is searched as deep as the window
  needs, which finds the same results as scoring every image.  A negative leaves out every
  candidate more like it (``weight * cosine``) than like its best positive; the others keep their
  scores.

Examples given by id are never among the results.  Nothing here knows the index: it asks the
engine for vectors, embeddings and searches, so whatever restricts a search restricts these too.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgsearch.indexer.errors import ImageError, InvalidInputError, quote
from imgsearch.indexer.vectors import l2_normalize
from imgsearch.search.errors import InvalidFieldError
from imgsearch.search.query.numbers import number_field
from imgsearch.search.query.text import check_text, text_vectors
from imgsearch.search.query.window import MAX_K, Window

STRATEGIES = ("rocchio", "best")
NEGATIVE_WEIGHT = 0.5  # Rocchio's gamma (its beta is 1): a negative as strong as a positive would push the
# query away from what the positives share (with one of each at cosine 0.8, the positive itself would score 0.32)
MAX_WEIGHT = 100.0
MAX_EXAMPLES = 100  # positives and negatives together


@dataclass(frozen=True)
class Example:
    """One example: ``kind`` "id" (an indexed id), "vector" (D numbers), "image" (a path, bytes, a file
    object or a PIL image) or "text" (words); ``name`` is how messages call it (e.g. "positive[2]")."""

    kind: str
    value: object
    weight: float = 1.0
    name: str = ""

    @classmethod
    def of_id(cls, row_id: int, weight: float = 1.0) -> "Example":
        return cls("id", row_id, weight)

    @classmethod
    def of_vector(cls, vector, weight: float = 1.0) -> "Example":
        return cls("vector", vector, weight)

    @classmethod
    def of_image(cls, image, weight: float = 1.0, name: str = "") -> "Example":
        return cls("image", image, weight, name)

    @classmethod
    def of_text(cls, text: str, weight: float = 1.0, name: str = "") -> "Example":
        """Words (a plain ``str`` example is an image's path): needs an index with a text tower."""
        return cls("text", text, weight, name)


def as_example(item, name: str) -> Example:
    """An Example from an Example, an int (an id), a sequence of numbers (a vector) or an image."""
    if isinstance(item, Example):
        return item if item.name else dataclasses.replace(item, name=name)
    if isinstance(item, bool):
        pass  # not an id
    elif isinstance(item, (int, np.integer)):
        return Example("id", int(item), name=name)
    elif isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)) or hasattr(item, "read"):
        return Example("image", bytes(item) if isinstance(item, (bytearray, memoryview)) else item, name=name)
    elif isinstance(item, (list, tuple, np.ndarray)):
        return Example("vector", item, name=name)
    raise InvalidInputError(f"{name}: an example is an indexed id, a vector or an image (a path, bytes, a file "
                            f"or a PIL image), got {quote(item)}")


def check_weight(weight, name: str) -> float:
    try:
        value = number_field(weight, "weight", 0, MAX_WEIGHT, text=False)
    except InvalidFieldError:
        value = 0.0
    if not value > 0:
        raise InvalidFieldError("weight", f"{name}: weight must be a number above 0 and at most {MAX_WEIGHT:g}, "
                                          f"got {quote(weight)}")
    return value


def check_strategy(strategy) -> str:
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise InvalidFieldError("strategy", f"strategy must be one of {', '.join(STRATEGIES)}, got {quote(strategy)}")
    return strategy


def check_examples(positive, negative) -> tuple[list[Example], list[Example]]:
    """Both lists as checked Examples (weights too), or InvalidInputError saying what to change."""
    for name, items in (("positive", positive), ("negative", negative)):
        if isinstance(items, (str, bytes, dict)) or not hasattr(items, "__iter__"):
            raise InvalidInputError(f"{name} must be a list of examples, got {quote(items)}")
    pos = [as_example(x, f"positive[{i}]") for i, x in enumerate(positive)]
    neg = [as_example(x, f"negative[{i}]") for i, x in enumerate(negative)]
    if not pos:
        raise InvalidInputError("a query of examples needs at least one positive example (an id, a vector or "
                                "an image); negatives alone say only what not to find")
    if len(pos) + len(neg) > MAX_EXAMPLES:
        raise InvalidInputError(f"a query may have at most {MAX_EXAMPLES} examples, got {len(pos) + len(neg)}")
    for ex in pos + neg:
        check_weight(ex.weight, ex.name)
        if ex.kind == "text":
            check_text(ex.value, ex.name)
    return pos, neg


def search_examples(engine, positive, negative, query) -> list:
    """The results for these examples (see the module's docstring) in the window of ``query`` (a checked
    ``Query``: search/query/spec.py), with its strategy, head and filter."""
    pos, neg = check_examples(positive, negative)
    if query.head is not None:
        engine.head(query.head)  # a bad head name fails before anything is embedded
    p, wp = _vectors(engine, pos, query.max_pixels), np.array([ex.weight for ex in pos])  # (m, D), (m,)
    n, wn = _vectors(engine, neg, query.max_pixels), np.array([ex.weight for ex in neg])  # (j, D), (j,)
    exclude = {int(ex.value) for ex in pos + neg if ex.kind == "id"}
    if query.strategy == "rocchio":
        return engine.search_vector(rocchio_vector(p, wp, n, wn), exclude=exclude, query=query)
    return _best(engine, p, wp, n, wn, query.window(), exclude, query.head, query.filter)


def rocchio_vector(p: np.ndarray, wp: np.ndarray, n: np.ndarray, wn: np.ndarray) -> np.ndarray:
    """(D,) weighted mean of the positives p (m, D) minus NEGATIVE_WEIGHT times that of the negatives n (j, D)."""
    query = wp @ p / wp.sum()
    if len(n):
        query = query - NEGATIVE_WEIGHT * (wn @ n / wn.sum())
    if not np.linalg.norm(query) > 1e-6:
        raise InvalidInputError("the examples cancel out: their weighted mean has no direction to search in "
                                "(a zero vector, or negatives that outweigh the positives); change the examples "
                                "or their weights")
    return query


def _vectors(engine, examples: list[Example], max_pixels) -> np.ndarray:
    """(len(examples), D) unit embeddings of the examples."""
    rows = []
    for ex in examples:
        if ex.kind == "id":
            rows.append(engine.vector(ex.value))
        elif ex.kind == "text":
            rows.append(text_vectors(engine, [ex.value])[0])
        elif ex.kind == "vector":
            try:
                rows.append(engine.check_vector(ex.value))
            except InvalidInputError as exc:
                raise type(exc)(f"{ex.name}: {exc}") from None
        else:
            try:
                rows.append(engine.embed_images([ex.value], max_pixels=max_pixels)[0])
            except ImageError as exc:
                raise exc.about(ex.name) from None
    return l2_normalize(np.stack(rows)) if rows else np.zeros((0, engine.dim), np.float32)


def _best(engine, p, wp, n, wn, win: Window, exclude: set, head, filter=None) -> list:
    """Candidates by their best positive's weighted score, those nearer a negative left out."""
    pool = win.depth
    while True:
        best, full = {}, False  # id -> hit; whether a search came back full (more lie deeper)
        for vector, weight in zip(p, wp):
            floor = None if win.min_score is None else win.min_score / weight
            if floor is not None and floor > 1:
                continue  # no cosine reaches it
            hits = engine.search_vector(vector, pool, exclude=exclude, head=head, filter=filter,
                                        min_score=None if floor is None else max(floor, -1.0))
            full |= len(hits) == pool
            for h in hits:
                score = float(weight * h.score)
                if h.id not in best or score > best[h.id].score:
                    best[h.id] = dataclasses.replace(h, score=score)
        if len(n) and best:
            _drop_nearer_negatives(engine, best, n, wn, exclude, head)
        if not len(n) or len(best) >= win.depth or not full or pool >= MAX_K:
            break
        pool = min(MAX_K, pool * 4)  # negatives left too few: look deeper
    return win.cut(sorted(best.values(), key=lambda h: (-h.score, h.id)))


def _drop_nearer_negatives(engine, best: dict, n, wn, exclude: set, head) -> None:
    lowest = min(h.score for h in best.values())
    for vector, weight in zip(n, wn):
        floor = lowest / weight  # only a candidate this near the negative can be nearer it than its positive
        if floor > 1:
            continue
        for h in engine.search_vector(vector, MAX_K, exclude=exclude, head=head, min_score=max(floor, -1.0)):
            if h.id in best and weight * h.score > best[h.id].score:
                del best[h.id]
