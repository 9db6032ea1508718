"""What a query answers with."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    label: str
    score: float  # cosine similarity, 1 = identical direction

    def to_dict(self) -> dict:
        return asdict(self)


def score_bands_apply(backbone: str) -> bool:
    """Whether the page's score bands say what this index's scores mean: they were measured image to image with
    one encoder (``BackboneSpec.score_bands``); a KerasHub preset's, a model file's or another CNN's cosines run
    on other scales."""
    from imgsearch.indexer.model.backbones import BACKBONES

    spec = BACKBONES.get(backbone)
    return bool(spec and spec.score_bands)
