"""Few-shot heads: linear classifiers fitted on a handful of embeddings per class, and what can be measured of them.

Two model families, both stored as the same linear head (weights (D, C), bias (C,),
probabilities the softmax of the logits; ``indexer/folder/heads.py``):

- ``softmax``: multinomial logistic regression (scikit-learn, L-BFGS) with the
  regularisation ``SOFTMAX_C`` chosen for small sets: C multiplies the *sum* of the
  examples' losses, so the penalty matters most at 1-5 examples per class and
  fades as examples are added (scripts/fewshot_table.py measured the values).
- ``svm``: the seed talks' method, a linear SVM (one-vs-rest, hinge loss, ``SVM_C``) whose
  decision values become probabilities by temperature scaling: softmax(d / T), T
  fitted to minimise the log-loss of *out-of-fold* decision values (each example
  scored by an SVM that did not see it).  Temperature scaling, not scikit-learn's
  CalibratedClassifierCV: it needs no more examples than there are folds, keeps the
  head linear (the weights and bias are divided by T) and never changes which class
  wins.  Fallback: when some class has a single example nothing can be held out,
  and T is ``FALLBACK_TEMPERATURE`` (the raw decision values: a margin of 1 either
  way reads as p = 0.88 between two classes); the head's metrics say which ran.

``cross_validated`` gives the figures a few examples allow: out-of-fold accuracy
of the head and of the kNN baseline, folds built so that a class with a single
example is always trained on and never measured, with per-class example counts
and warnings for classes too small to measure.  Pure functions of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imgsearch.indexer.learn.classifiers import classification_metrics, knn_vote

MODELS = ("softmax", "svm")
DEFAULT_MODEL = "softmax"  # from the README's few-shot table: see there for the numbers
SOFTMAX_C = 30.0  # inverse L2 strength on the summed log-loss of unit-length embeddings (README: the sweep)
SVM_C = 10.0  # inverse L2 strength on the summed hinge loss (README: the sweep)
FALLBACK_TEMPERATURE = 1.0
MIN_TO_MEASURE = 2  # examples a class needs to be measured: one held out, one still trained on
MAX_FOLDS = 5
KNN_K = 10


@dataclass
class LinearFit:
    weights: np.ndarray  # (D, C)
    bias: np.ndarray  # (C,)
    calibration: dict = field(default_factory=dict)  # how the probabilities were calibrated


def check_model(model: str) -> str:
    from imgsearch.indexer.errors import InvalidInputError, quote

    if model not in MODELS:
        raise InvalidInputError(f"model must be one of {', '.join(MODELS)}, got {quote(model)}")
    return model


def _as_columns(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's (C or 1, D) coefficients -> (D, C) weights, (C,) bias; a binary model's single
    row w becomes the columns (-w/2, w/2), whose softmax is the model's sigmoid."""
    coef, intercept = np.asarray(coef, np.float64), np.asarray(intercept, np.float64)
    if coef.shape[0] == 1:
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    return coef.T.astype(np.float32), intercept.astype(np.float32)


def _fit_raw(x: np.ndarray, y: np.ndarray, model: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(D, C) weights and (C,) bias of ``model`` fitted on x (n, D), y (n,) (every class present)."""
    if model == "softmax":
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=SOFTMAX_C, max_iter=2000, class_weight="balanced", random_state=seed)
    else:
        from sklearn.svm import LinearSVC

        # the hinge loss of the classic SVM (as MLlib's LinearSVC, so Spark-trained heads agree with these);
        # dual: with fewer examples than dimensions it is the cheaper problem
        clf = LinearSVC(C=SVM_C, loss="hinge", class_weight="balanced", dual=True, max_iter=20000,
                        random_state=seed)
    clf.fit(x, y)
    return _as_columns(clf.coef_, clf.intercept_)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in [0.01, 100] minimising the mean log-loss of softmax(logits / T) for labels y."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, np.float64)

    def loss(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(y)), y]))

    return float(np.exp(minimize_scalar(loss, bounds=(np.log(0.01), np.log(100)), method="bounded").x))


def fold_of(y: np.ndarray, seed: int = 0) -> tuple[np.ndarray, int]:
    """(fold (n,), number of folds): each class with >= MIN_TO_MEASURE examples dealt round-robin over the
    folds in a seeded order, so every fold leaves at least one of it to train on; -1: never held out."""
    counts = np.bincount(y)
    measurable = counts >= MIN_TO_MEASURE
    folds = -np.ones(len(y), dtype=np.int64)
    if not measurable.any():
        return folds, 0
    n_folds = int(min(MAX_FOLDS, counts[measurable].max()))
    rng = np.random.default_rng(seed)
    start = 0
    for c in np.flatnonzero(measurable):
        members = rng.permutation(np.flatnonzero(y == c))
        # a class of m < n_folds examples is held out in m folds only; staggered, so folds stay even
        folds[members] = (start + np.arange(len(members))) % n_folds
        start += len(members)
    return folds, n_folds


def _out_of_fold_logits(x, y, model: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(held indices, their (h, C) logits from models that did not see them)."""
    folds, n_folds = fold_of(y, seed)
    held, logits = [], []
    for f in range(n_folds):
        test = folds == f
        if not test.any():
            continue
        w, b = _fit_raw(x[~test], y[~test], model, seed)
        held.append(np.flatnonzero(test))
        logits.append(x[test] @ w + b)
    if not held:
        return np.zeros(0, np.int64), np.zeros((0, int(y.max()) + 1), np.float32)
    return np.concatenate(held), np.vstack(logits)


def fit_linear(x: np.ndarray, y: np.ndarray, model: str, *, seed: int = 0) -> LinearFit:
    """Fit ``model`` ("softmax" or "svm") on x (n, D) unit embeddings, y (n,) class indices 0..C-1, all present."""
    check_model(model)
    w, b = _fit_raw(x, y, model, seed)
    if model == "softmax":
        return LinearFit(w, b, {"method": "none", "why": "a softmax head's probabilities are its own"})
    counts = np.bincount(y)
    if counts.min() >= MIN_TO_MEASURE:
        held, logits = _out_of_fold_logits(x, y, model, seed)
        t = fit_temperature(logits, y[held])
        how = {"method": "temperature", "temperature": round(t, 6), "fitted_on": f"{len(held)} out-of-fold "
               "decision values"}
    else:
        t = FALLBACK_TEMPERATURE
        how = {"method": "temperature", "temperature": t, "fitted_on": "none: a class has a single example, "
               "so nothing could be held out; probabilities are the softmax of the raw decision values"}
    return LinearFit((w / t).astype(np.float32), (b / t).astype(np.float32), how)


def class_counts(y: np.ndarray, classes: list[str]) -> dict[str, int]:
    counts = np.bincount(y, minlength=len(classes))
    return {c: int(n) for c, n in zip(classes, counts)}


def warnings_of(y: np.ndarray, classes: list[str]) -> list[str]:
    """What a person should know about these examples before trusting the head's figures."""
    counts = np.bincount(y, minlength=len(classes))
    out = [f"class {classes[i]!r} has {counts[i]} example{'s' if counts[i] != 1 else ''}: too few to measure "
           f"(at least {MIN_TO_MEASURE} are needed, one to hold out); add more to see how it does"
           for i in np.flatnonzero(counts < MIN_TO_MEASURE)]
    if counts.max() > 3 * counts.min():
        out.append(f"classes are unbalanced ({counts.min()} to {counts.max()} examples); they are weighted to "
                   "count alike, but the smallest is the least certain")
    return out


def cross_validated(x: np.ndarray, y: np.ndarray, classes: list[str], model: str, *, seed: int = 0,
                    knn_k: int = KNN_K) -> dict:
    """The held-out figures these examples allow: out-of-fold metrics of the head and of the kNN vote.

    {"examples_per_class", "warnings", "folds", "measured_examples", "validation", "knn_validation"}; the
    two metrics are None when no class has MIN_TO_MEASURE examples.
    """
    folds, n_folds = fold_of(y, seed)
    report = {"examples_per_class": class_counts(y, classes), "warnings": warnings_of(y, classes),
              "folds": n_folds, "measured_examples": int((folds >= 0).sum()), "validation": None,
              "knn_validation": None, "knn_k": knn_k}
    if not n_folds:
        return report
    held, logits = _out_of_fold_logits(x, y, model, seed)
    knn = np.empty(len(held), np.int64)
    at = 0
    for f in range(n_folds):
        test = folds == f
        if test.any():
            knn[at:at + test.sum()] = knn_vote(x[~test], y[~test], x[test], knn_k)
            at += int(test.sum())
    truth = y[held]
    report["validation"] = classification_metrics(truth, logits.argmax(axis=1), classes)
    report["knn_validation"] = classification_metrics(truth, knn, classes)
    return report
