"""What the client's calls answer with: the JSON API's replies as frozen dataclasses, and their parsers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator


@dataclass(frozen=True)
class RemoteHit:
    id: int
    path: str
    label: str
    score: float
    thumbnail_url: str
    width: int | None = None  # pixels and bytes as indexed (None: an index of an older format)
    height: int | None = None
    file_size: int | None = None


@dataclass(frozen=True)
class SearchResponse:
    """Results best first; iterates, indexes and measures like the list of hits."""

    results: list[RemoteHit]
    took_ms: float
    backbone: str
    query: dict = field(default_factory=dict)
    matched: int | None = None  # with a filter: the images it selects
    note: str | None = None  # with a filter selecting none: why the results are empty

    def __iter__(self) -> Iterator[RemoteHit]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]


@dataclass(frozen=True)
class RemoteExplanation:
    """Why ``id`` matches the query: its score split over the query's and the result's cells, rows first
    (lists of lists covering each image's centred square); each grid's sum, with ``head_share``, is the score."""

    score: float
    query_shares: list[list[float]]
    result_shares: list[list[float]]
    query_sum: float
    result_sum: float
    id: int
    head: str | None
    head_share: float
    took_ms: float
    raw: dict = field(default_factory=dict)  # the whole answer (residuals, forward passes, the query)


@dataclass(frozen=True)
class Prediction:
    label: str  # the class name
    probability: float


@dataclass(frozen=True)
class ClassifyResponse:
    """Predictions best first; iterates and indexes like the list of predictions."""

    predictions: list[Prediction]
    head: str
    took_ms: float

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.predictions)

    def __len__(self) -> int:
        return len(self.predictions)

    def __getitem__(self, i):
        return self.predictions[i]


@dataclass(frozen=True)
class RemoteDuplicateGroup:
    group: int
    ids: list[int]  # the keeper first; exact copies repeat the one indexed id, once per file
    paths: list[str]
    scores: list[float]  # each member's score against the keeper
    keep: int
    exact: bool
    thumbnail_urls: list[str]


@dataclass(frozen=True)
class DuplicatesPage:
    """One page of duplicate groups; iterates, indexes and measures like the list of groups."""

    groups: list[RemoteDuplicateGroup]
    total: int  # groups in the whole index at this threshold
    offset: int
    limit: int
    threshold: float
    keep: str
    generation: int  # the index version they were found in
    keypoints: bool = False  # whether pairs below the threshold were confirmed by keypoints

    def __iter__(self) -> Iterator[RemoteDuplicateGroup]:
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i):
        return self.groups[i]


def classified(body: dict) -> ClassifyResponse:
    preds = [Prediction(p["class"], float(p["probability"])) for p in body["predictions"]]
    return ClassifyResponse(preds, body["head"], float(body["took_ms"]))


def response(body: dict) -> SearchResponse:
    hits = [RemoteHit(h["id"], h["path"], h["label"], float(h["score"]), h["thumbnail_url"], h.get("width"),
                      h.get("height"), h.get("file_size")) for h in body["results"]]
    return SearchResponse(hits, float(body["took_ms"]), body["backbone"], body.get("query", {}),
                          body.get("matched"), body.get("note"))


def duplicates_page(body: dict) -> DuplicatesPage:
    groups = [RemoteDuplicateGroup(int(g["group"]), [int(i) for i in g["ids"]], list(g["paths"]),
                                   [float(x) for x in g["scores"]], int(g["keep"]), bool(g["exact"]),
                                   list(g["thumbnail_urls"])) for g in body["groups"]]
    return DuplicatesPage(groups, int(body["total"]), int(body["offset"]), int(body["limit"]),
                          float(body["threshold"]), body["keep"], int(body.get("generation", 0)),
                          bool(body.get("keypoints", False)))


def explained(body: dict) -> RemoteExplanation:
    def grid(rows):
        return [[float(x) for x in row] for row in rows]

    return RemoteExplanation(float(body["score"]), grid(body["query_shares"]), grid(body["result_shares"]),
                             float(body["query_sum"]), float(body["result_sum"]), int(body["id"]), body.get("head"),
                             float(body.get("head_share", 0.0)), float(body["took_ms"]), body)
