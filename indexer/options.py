"""Command-line pieces every package's commands share: the --index option, the number types (``Integer``,
``Number``: the one strict parser of ``indexer/numbers.py``, so ``--top 1e400`` or a 400-digit ``--seed`` is
a usage error naming the option, as over HTTP), and how the FAISS index section of a manifest is described.  (Failures are reported once, by the root group in web/cli.py.)"""

from __future__ import annotations

from pathlib import Path

import click

from imgsearch.indexer.errors import InvalidFieldError
from imgsearch.indexer.numbers import MAX_ID, integer_field, number_field

index_option = click.option(
    "--index", "index_dir", required=True, envvar="IMGSEARCH_INDEX", show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path), help="Index folder.",
)



def _option_name(param) -> str:
    return max(getattr(param, "opts", None) or [param.name or "value"], key=len) if param else "value"


class Integer(click.ParamType):
    """An integer option or argument from ``low`` to ``high``, read by ``integer_field``."""

    name = "integer"

    def __init__(self, low: int = -MAX_ID, high: int = MAX_ID):
        self.low, self.high = low, high

    def convert(self, value, param, ctx):
        try:
            return integer_field(value, _option_name(param), self.low, self.high)
        except InvalidFieldError as exc:
            self.fail(str(exc), param, ctx)

    def __repr__(self) -> str:
        return f"Integer({self.low}, {self.high})"


class Number(click.ParamType):
    """A finite number option from ``low`` (``above_low``: above it) to ``high``, read by ``number_field``."""

    name = "number"

    def __init__(self, low: float, high: float, *, above_low: bool = False):
        self.low, self.high, self.above_low = low, high, above_low

    def convert(self, value, param, ctx):
        try:
            return number_field(value, _option_name(param), self.low, self.high, above_low=self.above_low)
        except InvalidFieldError as exc:
            self.fail(str(exc), param, ctx)

    def __repr__(self) -> str:
        return f"Number({self.low}, {self.high})"


def describe_ann(count: int, ann: dict) -> list[str]:
    """Lines describing a manifest's ``ann`` section: the index type, its size, and how it was tuned."""
    tuning = ann.get("tuning") or {}
    params = ", ".join(f"{k}={v}" for k, v in (tuning.get("params") or {}).items()) or "none"
    lines = [f"index type: {ann['factory']} over {count} vectors, ~{ann['memory_bytes'] / 2**20:.1f} MiB, "
             f"built on {ann.get('device', 'cpu')}"]
    if ann.get("lists_file"):
        lines.append(f"on disk:    inverted lists in {ann['lists_file']}, memory-mapped, searched on CPU")
    if ann["factory"] == "Flat":
        return lines + ["tuned:      exact search, nothing to tune; recall@10 1.000"]
    return lines + [f"tuned:      {params}; recall@10 {tuning.get('recall_at_10', 1.0):.3f} "
                    f"(target {tuning.get('target_recall', 0.95)}, {tuning.get('queries', 0)} held-back queries)"]


spec_option = click.option(
    "--spec", "model_spec", default=None, metavar="SPEC.json|JSON",
    help="With --backbone onnx:FILE.onnx: the model's spec (input size, layout, mean/std, output, pooling), a JSON "
         "file or inline JSON [default: FILE.onnx.json beside the model; an existing index keeps its own].")
