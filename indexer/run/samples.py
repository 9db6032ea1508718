"""Building a sample index in one call (sample set exported, then indexed).
"""

from __future__ import annotations

from pathlib import Path

from imgsearch.indexer.inputs.samples import export_sample


def sample_index(name: str, work_dir, backbone: str = "efficientnet-lite0", *, limit: int | None = None,
                 progress: bool = False, precision: str | None = None) -> Path:
    """Export sample set ``name`` under ``work_dir`` (once) and index it with ``backbone``.

    ``precision`` None: the default for a new index (a folder of its own otherwise).
    Re-running reuses both: the embeddings are computed once.  Returns the index folder.
    """
    import dataclasses

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images

    work_dir = Path(work_dir)
    src = work_dir / (f"{name}-{limit}" if limit else name)
    if not (src / ".complete").is_file():
        export_sample(name, src, limit=limit)
        (src / ".complete").touch()
    index_dir = work_dir / f"index-{src.name}-{backbone}" if precision is None else \
        work_dir / f"index-{src.name}-{backbone}-{precision}"
    index_images([src], index_dir, dataclasses.replace(IndexConfig(), backbone=backbone, progress=progress,
                                                       precision=precision))
    return index_dir
