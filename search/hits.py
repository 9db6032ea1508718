"""What a query answers with, and the errors a query by id or vector can meet."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from imgsearch.indexer.errors import InvalidInputError, NotFoundError


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    label: str
    score: float  # cosine similarity, 1 = identical direction

    def to_dict(self) -> dict:
        return asdict(self)


class InvalidVectorError(InvalidInputError):
    """A query vector is not the index's dimension of finite numbers."""


class UnknownIdError(NotFoundError, KeyError):
    """No image with this id is in the index."""

    def __init__(self, row_id):
        super().__init__(row_id)
        self.id = row_id

    def __str__(self) -> str:
        return f"no image with id {self.id} in the index"
