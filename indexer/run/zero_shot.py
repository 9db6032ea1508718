"""Zero-shot heads (issue 33): a head from class names alone, by the text tower of the index's image-text encoder
(a SigLIP preset), stored in the existing head format (indexer/folder/heads.py) so that classify and head-aware
search use it unchanged.

Each class name is put into every prompt template ("a photo of a {}."), the prompts are embedded by the text
tower (unit vectors) and averaged per class, and the mean re-normalised: the class's direction ``t_c``.  The head
is the linear layer ``W = s * [t_1 ... t_C]`` (D, C), bias 0, so its probabilities are

    p(c | image) = softmax_c(s * cos(image, t_c)),

the softmax of the scaled cosines.  ``s``, the inverse temperature, is (``scale``):

* ``"preset"`` (the default): the preset's own learned logit scale (SigLIP's ``exp(logit_scale)``, recorded in
  the manifest).  SigLIP learned it for its pairwise sigmoid loss, so as a softmax temperature it is the model's
  own sharpness, not one fitted to these classes; SigLIP's bias is the same for every class and cancels in a
  softmax.  A preset that records no scale gets ``FALLBACK_SCALE``, and the head says so.
* ``"labels"``: fitted on the index's labelled images whose label is one of the classes (temperature scaling:
  the ``s`` that minimises their mean negative log-likelihood).  It changes the probabilities, never which class
  is the most probable.
* a number: that ``s``.

Where the index has labelled images of the classes, the head's metrics measure it on all of them (nothing was
trained on them, so none is held out), beside the kNN vote on the same images, leave-one-out: what the labels
themselves would give.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

from imgsearch.indexer.errors import InvalidInputError, quote
from imgsearch.indexer.folder.heads import NAME_PATTERN, Head, HeadError, save_head
from imgsearch.indexer.folder.lock import writer_lock
from imgsearch.indexer.folder.manifest import backbone_name, check_compatible, check_text_queries
from imgsearch.indexer.folder.store import EmbeddingStore
from imgsearch.indexer.learn.classifiers import classification_metrics, knn_vote
from imgsearch.indexer.model.text_encoder import load_text_encoder
from imgsearch.indexer.publish.head_indexes import head_search_index
from imgsearch.indexer.run.heads import labelled_embeddings
from imgsearch.indexer.vectors import l2_normalize

MODEL = "zero-shot"  # head.json's model
TEMPLATES = ("a photo of a {}.", "a photo of the {}.", "a picture of a {}.", "an image of a {}.",
             "a close-up photo of a {}.", "a drawing of a {}.")  # after the CLIP/SigLIP prompt ensembles
FALLBACK_SCALE = 100.0  # CLIP's learned logit scale (its ceiling): for a preset that records none
MAX_CLASSES = 1000
KNN_K = 10
MAX_NAME = 200  # characters of a class name
SCALE_RANGE = (1.0, 1000.0)  # a fitted inverse temperature is searched in this range


def parse_classes(raw) -> list[str]:
    """Class names from a comma-separated text ("cat,dog,car"), a JSON list text, or a list: each stripped,
    at least two, none twice or empty."""
    if isinstance(raw, str):
        text = raw.strip()
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except json.JSONDecodeError:
                raise InvalidInputError(f"zero-shot classes: {quote(text, 60)} is not a JSON list of names") from None
        else:
            raw = text.split(",")
    if not isinstance(raw, (list, tuple)) or not all(isinstance(c, str) for c in raw):
        raise InvalidInputError(f"zero-shot classes must be names, such as \"cat,dog,car\", got {quote(raw, 60)}")
    classes = [c.strip() for c in raw]
    if any(not c for c in classes):
        raise InvalidInputError("zero-shot classes: an empty name (two commas, or one at an end): name every class")
    if len(classes) < 2 or len(classes) > MAX_CLASSES:
        raise InvalidInputError(f"a zero-shot head needs 2 to {MAX_CLASSES} classes, got {len(classes)}")
    if len(set(classes)) < len(classes):
        twice = next(c for c in classes if classes.count(c) > 1)
        raise InvalidInputError(f"zero-shot class {twice!r} is named twice: name each class once")
    if (long := next((c for c in classes if len(c) > MAX_NAME), None)) is not None:
        raise InvalidInputError(f"zero-shot class {quote(long, 40)} has over {MAX_NAME} characters: shorten it")
    return classes


def check_scale(scale) -> str | float:
    if scale in ("preset", "labels"):
        return scale
    try:
        value = float(scale)
    except (TypeError, ValueError):
        value = math.nan
    if not SCALE_RANGE[0] <= value <= SCALE_RANGE[1]:
        raise InvalidInputError(f"the zero-shot scale must be 'preset', 'labels' or a number from "
                                f"{SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g}, got {quote(scale)}")
    return value


def class_directions(encoder, classes: list[str], templates=TEMPLATES) -> np.ndarray:
    """(C, D) unit vectors: each class's prompts embedded, averaged and re-normalised."""
    prompts = [t.format(c) for c in classes for t in templates]
    vectors = encoder.encode(prompts).reshape(len(classes), len(templates), -1)  # (C, T, D), unit rows
    return l2_normalize(vectors.mean(axis=1))


def softmax_nll(cosines: np.ndarray, y: np.ndarray, scale: float) -> float:
    z = scale * cosines
    z = z - z.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))


def fit_scale(cosines: np.ndarray, y: np.ndarray) -> float:
    """The inverse temperature in SCALE_RANGE minimising the mean NLL (golden-section search on log s: the NLL
    of temperature scaling is convex in s)."""
    lo, hi = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if softmax_nll(cosines, y, math.exp(a)) <= softmax_nll(cosines, y, math.exp(b)):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


def zero_shot_head(index_dir, name: str, classes, *, templates=TEMPLATES, scale="preset",
                   search_weight: float = 1.0, wait: bool = True) -> Head:
    """Make head ``name`` from the class names ``classes`` (see the module's docstring) and save it in the index
    folder, under its writer lock."""
    if not NAME_PATTERN.match(name):
        raise HeadError(f"head name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    classes, scale = parse_classes(classes), check_scale(scale)
    templates = list(templates)
    if not templates or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
        raise InvalidInputError("each prompt template must be a text with one {} where the class name goes")
    with writer_lock(index_dir, wait=wait):
        started = time.perf_counter()
        manifest = EmbeddingStore(index_dir).read_manifest()
        text = check_text_queries(manifest)
        encoder = load_text_encoder(backbone_name(manifest))
        preset = encoder.preset
        check_compatible(manifest, preset.name, preset.dim, str(index_dir), {"preset": preset.describe()})
        directions = class_directions(encoder, classes, templates)  # (C, D)
        measured = _labelled(index_dir, classes, directions)  # (cosines, y, vectors) of labelled images of them
        if scale == "labels":
            if measured is None:
                raise HeadError("--zero-shot-scale labels fits the temperature on labelled images of the classes, "
                                f"and no indexed image is labelled one of {', '.join(classes)}: use 'preset'")
            s, how = fit_scale(*measured[:2]), f"fitted on {len(measured[1])} labelled images (least NLL)"
        elif scale == "preset":
            recorded = text.get("logit_scale")
            s, how = (float(recorded), "the preset's learned logit scale") if recorded else (
                FALLBACK_SCALE, "the preset records no logit scale: CLIP's, 100")
        else:
            s, how = float(scale), "given"
        head = Head(name, classes, (s * directions.T).astype(np.float32), np.zeros(len(classes), np.float32),
                    backbone_name(manifest), manifest["dim"], search_weight,
                    created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), labels_source="zero-shot: class names",
                    model=MODEL, calibration={"method": "temperature", "temperature": 1 / s, "scale": s,
                                              "how": how, "templates": templates})
        head.metrics = {"model": MODEL, "train_images": 0, "train_seconds": round(time.perf_counter() - started, 2),
                        "val_images": 0, "validation": None, "warnings": []}
        if measured is not None:
            cosines, y, vectors = measured
            knn = knn_vote(vectors, y, vectors, KNN_K, exclude_self=True) if len(y) > 1 else y
            head.metrics.update(val_images=int(len(y)), nll=round(softmax_nll(cosines, y, s), 6),
                                validation=classification_metrics(y, cosines.argmax(axis=1), classes),
                                knn_validation=classification_metrics(y, knn, classes), knn_k=KNN_K)
        save_head(index_dir, head, head_search_index(index_dir, head, manifest), manifest)
        return head


def _labelled(index_dir, classes: list[str], directions: np.ndarray):
    """(cosines (n, C), class indexes (n,), unit vectors (n, D)) of the labelled images whose label is one of
    ``classes``, or None."""
    try:
        _, vectors, labels, _ = labelled_embeddings(index_dir)
    except HeadError:  # no label at all
        return None
    index = {c: i for i, c in enumerate(classes)}
    keep = np.array([label in index for label in labels], bool)
    if not keep.any():
        return None
    y = np.array([index[label] for label in labels[keep]])
    unit = l2_normalize(vectors[keep])
    return unit @ directions.T, y, unit
