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


