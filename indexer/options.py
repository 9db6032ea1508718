"""Command-line pieces every package's commands share: the --index option, and how the FAISS index
section of a manifest is described.  (Failures are reported once, by the root group in web/cli.py.)"""

from __future__ import annotations

from pathlib import Path

import click

index_option = click.option(
    "--index", "index_dir", required=True, envvar="IMGSEARCH_INDEX", show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path), help="Index folder.",
)


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
