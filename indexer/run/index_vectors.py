"""``imgsearch index-vectors``: index vectors made elsewhere (another model, a scale test), through the one run.

The rows of a vectors file (``inputs/vector_source.py``) go through the same
run as images (``indexing.run_index``): the ledger gives ids in the file's
order, collapses copies by sha256 and keeps a changed path's id, the writer
writes the shards, and publishing builds and tunes the FAISS index.  Only the
stage differs: ``VectorStage`` reads the vectors instead of embedding images.
On Spark (``--engine spark``) executors read the vectors and write the shards
themselves, the ledger's rules run as DataFrame steps: ``vectors``.

The index records an external backbone (``external: true``, the model's name
as given): images cannot be embedded for it, so it is queried by vector or id
(``manifest.check_image_queries``), and only ``index-vectors`` with vectors of
the same name and dimension adds to it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.errors import InvalidInputError
from imgsearch.indexer.inputs.vector_source import VectorSource, open_vector_source
from imgsearch.indexer.run.indexing import IndexRun, Outcome, OutcomeStage, Outcomes, embedded_rows, run_index
from imgsearch.indexer.run.summary import IndexSummary

EXTERNAL_PREFIX = "external:"


@dataclass(frozen=True)
class ExternalBackbone:
    """The model that made a vectors file, known only by the name the user gives it and the dimension."""

    model: str
    dim: int
    input_size: int = 0  # no images: nothing to resize
    external: bool = True

    @property
    def name(self) -> str:
        return EXTERNAL_PREFIX + self.model

    def describe(self) -> dict:
        return {"name": self.name, "external": True, "model": self.model, "weights": None, "input_size": 0,
                "preprocessing": "", "resize": "", "precision": "float32"}


def check_model_name(model: str) -> str:
    if not model or len(model) > 100 or not all(c.isalnum() or c in "-_.+/@" for c in model):
        raise InvalidInputError(
            f"--model must name the model that made the vectors in 1-100 letters, digits or -_.+/@ "
            f"(e.g. clip-vit-b32), got {model!r}")
    return model


class VectorStage(OutcomeStage):
    """Hands the run a vectors file's rows, checked and normalised, as the embedded outcomes of its listing."""

    summary_type = IndexSummary

    def __init__(self, source: VectorSource, batch_rows: int = 4096):
        self.source = source
        self.batch_rows = batch_rows
        self.run: IndexRun | None = None

    def prepare(self, run: IndexRun) -> None:
        self.run = run

    @property
    def runtime(self) -> str:
        return f"external vectors ({os.path.basename(self.source.path)})"

    def done(self) -> None:
        pass

    def outcomes(self) -> Iterator[Outcomes]:
        files, dim = self.run.files, self.source.dim
        first_row: dict[str, int] = {}  # path -> its first row: a path names one vector
        for batch in self.source.batches(self.batch_rows):
            outcomes, keep = [], []
            for i, sha in enumerate(batch.sha256s):
                row = batch.start + i
                file = files[row]
                earlier = first_row.setdefault(file.path, row) if file.path else row
                if sha is None:
                    outcomes.append(Outcome(file, None, batch.reasons[i]))
                elif earlier != row:
                    outcomes.append(Outcome(file, None, f"row {row}: its path repeats row {earlier}'s"))
                else:
                    outcomes.append(Outcome(file, sha, embedded=True))
                    keep.append(i)
            rows = embedded_rows([files[batch.start + i] for i in keep], [batch.sha256s[i] for i in keep],
                                 [(0, 0)] * len(keep), batch.vectors[keep], dim) if keep else None
            yield Outcomes(outcomes, rows)


def index_vectors(src: str | os.PathLike, index_dir: str | os.PathLike, config: IndexConfig | None = None, *,
                  model: str = "external", sync: bool = False, wait: bool = True) -> IndexSummary:
    """Index the vectors of the Parquet file ``src`` into ``index_dir`` (created or extended).

    ``model`` names what made them; an existing index must hold vectors of that name and dimension.
    With ``sync``, indexed rows whose paths are not in ``src`` are removed.
    """
    config = config or IndexConfig()
    source = open_vector_source(src)
    backbone = ExternalBackbone(check_model_name(model), source.dim)
    return run_index([], index_dir, config, VectorStage(source), sync=sync, wait=wait,
                     files=source.listing(), backbone=backbone)
