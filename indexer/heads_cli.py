"""``imgsearch train-head``: a head trained on the stored embeddings (labelled folders, a labels CSV, a few
examples per class, Spark MLlib) or, with ``--zero-shot``, made from class names alone by the index's text tower
(an image-text preset such as SigLIP: indexer/run/zero_shot.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from imgsearch.indexer.cli import _echo_error, no_wait_option
from imgsearch.indexer.options import Integer, Number, index_option


@click.command("train-head")
@index_option
@click.option("--name", required=True, help="Name of the head (letters, digits, '.', '_', '-').")
@click.option("--labels", "labels_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV with columns path,label (default: the images' parent folders).")
@click.option("--examples", "examples_file", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path),
              help="JSON {class: [ids, indexed paths or {\"vector\": [...]}]} ('-': standard input): train from "
                   "a few examples per class, measured by cross-validation.")
@click.option("--zero-shot", "zero_shot", default=None, metavar="CLASSES",
              help="Make the head from class names alone, e.g. --zero-shot 'cat,dog,car' (or a JSON list), by the "
                   "index's text tower (an image-text preset such as SigLIP): nothing is trained.")
@click.option("--zero-shot-scale", default="preset", show_default=True, metavar="preset|labels|NUMBER",
              help="The zero-shot head's inverse temperature: the preset's logit scale, fitted on labelled "
                   "images of the classes, or a number (1 to 1000).")
@click.option("--template", "templates", multiple=True, metavar="TEXT",
              help="A zero-shot prompt with {} for the class name (repeatable) [default: 'a photo of a {}.' and "
                   "five more].")
@click.option("--model", type=click.Choice(["softmax", "svm"]), default=None,
              help="softmax (multinomial logistic regression) or svm (linear SVM, temperature-calibrated) "
                   "[default: softmax].")
@click.option("--engine", type=click.Choice(["local", "spark"]), default="local", show_default=True,
              help="spark: train with Spark MLlib straight from the Parquet shards (pip install imgsearch[spark]).")
@click.option("--master", default=None, help="Spark master URL (--engine spark) [default: spark.master, or local[*]].")
@click.option("--val-fraction", default=0.2, show_default=True, type=Number(0.05, 0.5),
              help="Stratified share held out for the reported metrics (labelled folders or --labels).")
@click.option("--search-weight", default=1.0, show_default=True, type=Number(0, 10),
              help="Weight of the class probabilities in head-aware search.")
@click.option("--seed", default=0, show_default=True, type=Integer(0, 2**32 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print the head's classes, model and metrics as JSON.")
@click.option("--delete", is_flag=True, help="Delete head NAME (its weights and search index) instead of training.")
@no_wait_option
def train_head_command(index_dir, name, labels_csv, examples_file, zero_shot, zero_shot_scale, templates, model,
                       engine, master, val_fraction, search_weight, seed, as_json, delete, no_wait):
    """Train a classification head on the stored embeddings (seconds, no image is re-read), or make one from
    class names alone (--zero-shot)."""
    if zero_shot is not None and (examples_file is not None or labels_csv is not None or model or engine == "spark"):
        raise click.UsageError("--zero-shot makes a head from class names alone: leave out --labels, --examples, "
                               "--model and --engine spark")
    if examples_file is not None and (labels_csv is not None or engine == "spark"):
        raise click.UsageError("--examples trains locally from its own labels: leave out --labels and --engine spark")
    try:
        if delete:
            from imgsearch.indexer.run.teach import remove_head

            remove_head(index_dir, name, wait=not no_wait)
            click.echo(json.dumps({"deleted": name}) if as_json else f"head {name!r} deleted from {index_dir}")
            return
        if zero_shot is not None:
            from imgsearch.indexer.run.zero_shot import TEMPLATES, zero_shot_head

            head = zero_shot_head(index_dir, name, zero_shot, templates=templates or TEMPLATES,
                                  scale=zero_shot_scale, search_weight=search_weight, wait=not no_wait)
        else:
            head = _train_head(index_dir, name, labels_csv, examples_file, model, engine, master, val_fraction,
                               search_weight, seed, no_wait)
    except Exception as exc:
        if as_json:  # the error's kind too, for a program running this command (the server: web/heads_api.py)
            _echo_error(exc)
        raise
    if as_json:
        click.echo(json.dumps({"name": head.name, "classes": head.classes, "model": head.model,
                               "calibration": head.calibration, "search_weight": head.search_weight,
                               "created": head.created, "labels_source": head.labels_source,
                               "metrics": head.metrics}))
        return
    _echo_head(head)


def _train_head(index_dir, name, labels_csv, examples_file, model, engine, master, val_fraction, search_weight, seed,
                no_wait):
    if examples_file is not None:
        from imgsearch.indexer.learn.fewshot import DEFAULT_MODEL
        from imgsearch.indexer.run.teach import read_examples_file, train_head_from_examples

        base = None if str(examples_file) == "-" else examples_file.resolve().parent
        return train_head_from_examples(index_dir, name, read_examples_file(examples_file),
                                        model=model or DEFAULT_MODEL, search_weight=search_weight, seed=seed,
                                        wait=not no_wait, base=base)
    if engine == "spark":
        from imgsearch.indexer.spark.heads import train_head_spark

        return train_head_spark(index_dir, name, model=model or "softmax", labels_csv=labels_csv,
                                val_fraction=val_fraction, search_weight=search_weight, seed=seed, master=master,
                                wait=not no_wait)
    from imgsearch.indexer.learn.classifiers import HeadTrainingConfig
    from imgsearch.indexer.run.heads import train_head

    config = dataclasses.replace(HeadTrainingConfig(), val_fraction=val_fraction, search_weight=search_weight,
                                 seed=seed, model=model or "softmax")
    return train_head(index_dir, name, labels_csv=labels_csv, config=config, wait=not no_wait)


def _echo_head(head) -> None:
    m = head.metrics
    if head.model == "zero-shot":
        return _echo_zero_shot(head)
    v, knn = m.get("validation"), m.get("knn_validation")
    how = f"{m['epochs']} epochs, " if m.get("epochs") else ""
    click.echo(f"head {head.name!r} ({head.model}): {len(head.classes)} classes, trained on {m['train_images']} "
               f"embeddings in {m['train_seconds']:.1f}s ({how}{m['val_images']} measured held out)")
    if "examples_per_class" in m:
        click.echo("  examples per class: " + ", ".join(f"{c} {n}" for c, n in m["examples_per_class"].items()))
    if m.get("repeats_dropped"):
        click.echo(f"  {m['repeats_dropped']} of the {m['examples_given']} examples given repeated an image given "
                   "before: each image counted once")
    if v is None:
        click.echo("  not measured: no class has 2 examples (one to hold out, one to train on)")
    else:
        click.echo(f"  validation accuracy {v['accuracy']:.4f}, macro-F1 {v['macro_f1']:.4f}")
        click.echo(f"  kNN-vote baseline (k={m['knn_k']}) on the same held-out examples: accuracy "
                   f"{knn['accuracy']:.4f}, macro-F1 {knn['macro_f1']:.4f}")
        click.echo("  worst classes: " + ", ".join(f"{w['class']} (F1 {w['f1']:.2f}, {w['support']} images)"
                                                   for w in v["worst_classes"]))
    for warning in m.get("warnings", []):
        click.echo(f"  warning: {warning}")


def _echo_zero_shot(head) -> None:
    m, cal = head.metrics, head.calibration
    click.echo(f"head {head.name!r} (zero-shot): {len(head.classes)} classes from their names, "
               f"{len(cal['templates'])} prompts each; softmax of {cal['scale']:.4g} x cosine ({cal['how']})")
    v = m.get("validation")
    if v is None:
        click.echo("  not measured: no indexed image is labelled with one of the class names")
    else:
        click.echo(f"  on the {m['val_images']} images labelled with a class name: accuracy {v['accuracy']:.4f}, "
                   f"macro-F1 {v['macro_f1']:.4f}, mean NLL {m['nll']:.4f} (nothing was trained on them)")
        knn = m["knn_validation"]
        click.echo(f"  kNN vote (k={m['knn_k']}, leave-one-out) on the same images: accuracy {knn['accuracy']:.4f}, "
                   f"macro-F1 {knn['macro_f1']:.4f}")
