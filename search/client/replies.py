"""What the client's calls answer with: the JSON API's replies as frozen dataclasses, and their parsers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from imgsearch.indexer.errors import ImgsearchError


class SearchAPIError(ImgsearchError):
    """Any failure talking to the server: ``status`` (None if unreachable), ``code``, ``message``;
    ``retry_after``: the seconds a 503 ``busy`` asks the caller to wait, else None."""

    def __init__(self, status: int | None, code: str, message: str, retry_after: float | None = None):
        super().__init__(f"{code}: {message}" if status is None else f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after


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
    evidence: list[dict] = field(default_factory=list)  # per member: cosine, decided_by, the check's numbers
    sizes: list[dict] = field(default_factory=list)  # per member: width, height, file_size (as stored)


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


@dataclass(frozen=True)
class RemoteDuplicatesJob:
    """A duplicates job on the server (POST /api/duplicates/jobs): its state and progress, its result once done."""

    id: str
    state: str  # running, done, cancelled, failed
    stage: str | None  # queued, pairs, verifying, grouping; None: the report was already computed
    done: int
    total: int  # units of this stage
    threshold: float
    keep: str
    keypoints: bool
    result: DuplicatesPage | None = None  # state "done": the page of groups asked for
    error: dict | None = None  # state "failed": {"code", "message"}


def duplicates_job(body: dict) -> RemoteDuplicatesJob:
    return RemoteDuplicatesJob(str(body["id"]), str(body["state"]), body["stage"], int(body["done"]),
                               int(body["total"]), float(body["threshold"]), str(body["keep"]),
                               bool(body["keypoints"]),
                               duplicates_page(body["result"]) if body.get("result") is not None else None,
                               body.get("error"))


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
                                   list(g["thumbnail_urls"]), [dict(e) for e in g.get("evidence", [])],
                                   [dict(x) for x in g.get("sizes", [])])
              for g in body["groups"]]
    return DuplicatesPage(groups, int(body["total"]), int(body["offset"]), int(body["limit"]),
                          float(body["threshold"]), body["keep"], int(body.get("generation", 0)),
                          bool(body.get("keypoints", False)))


def explained(body: dict) -> RemoteExplanation:
    def grid(rows):
        return [[float(x) for x in row] for row in rows]

    return RemoteExplanation(float(body["score"]), grid(body["query_shares"]), grid(body["result_shares"]),
                             float(body["query_sum"]), float(body["result_sum"]), int(body["id"]), body.get("head"),
                             float(body.get("head_share", 0.0)), float(body["took_ms"]), body)
