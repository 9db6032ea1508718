"""Python client for an imgsearch server's JSON API.

    client = SearchClient("http://127.0.0.1:8000")
    for hit in client.search("query.jpg", k=5):
        print(hit.score, hit.label, hit.path)
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Sequence, Union

import requests
from PIL import Image

from indexer.errors import ImgsearchError

ImageInput = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]


class SearchAPIError(ImgsearchError):
    """Any failure talking to the server: ``status`` (None if unreachable), ``code``, ``message``."""

    def __init__(self, status: int | None, code: str, message: str):
        super().__init__(f"{code}: {message}" if status is None else f"HTTP {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class RemoteHit:
    id: int
    path: str
    label: str
    score: float
    thumbnail_url: str


@dataclass(frozen=True)
class SearchResponse:
    """Results best first; iterates, indexes and measures like the list of hits."""

    results: list[RemoteHit]
    took_ms: float
    backbone: str
    query: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[RemoteHit]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]


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


class SearchClient:
    def __init__(self, base_url: str, *, timeout: float | tuple[float, float] = (3.05, 60.0),
                 session: requests.Session | None = None):
        """``timeout``: seconds, or (connect, read) seconds, for every request."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    # ------------------------------------------------------------ queries
    def search(self, image: ImageInput, k: int = 10, *, head: str | None = None) -> SearchResponse:
        """Nearest indexed images to ``image``: a path, bytes, file object or PIL image.

        ``head``: blend in that head's class probabilities (head-aware search).
        """
        name, data = _image_payload(image)
        fields = {"k": str(k), **({"head": head} if head else {})}
        return _response(self._request("POST", "/api/search", files={"image": (name, data)}, data=fields))

    def search_id(self, row_id: int, k: int = 10, *, head: str | None = None) -> SearchResponse:
        return _response(self._request("POST", "/api/search", json=_body(id=row_id, k=k, head=head)))

    def search_vector(self, vector: Sequence[float], k: int = 10, *, head: str | None = None) -> SearchResponse:
        body = _body(vector=[float(x) for x in vector], k=k, head=head)
        return _response(self._request("POST", "/api/search", json=body))

    def classify(self, image: ImageInput, head: str | None = None, top: int = 5) -> ClassifyResponse:
        """Class probabilities of a trained head (the only one, if ``head`` is None) for ``image``."""
        name, data = _image_payload(image)
        fields = {"top": str(top), **({"head": head} if head else {})}
        return _classified(self._request("POST", "/api/classify", files={"image": (name, data)}, data=fields))

    def classify_id(self, row_id: int, head: str | None = None, top: int = 5) -> ClassifyResponse:
        return _classified(self._request("POST", "/api/classify", json=_body(id=row_id, head=head, top=top)))

    def image(self, row_id: int, size: int | None = None) -> bytes:
        """An indexed image as JPEG bytes, fitted in size x size if given."""
        params = {"size": size} if size else None
        return self._request("GET", f"/api/images/{row_id}", params=params, raw=True)

    def info(self) -> dict:
        return self._request("GET", "/api/info")

    def health(self) -> dict:
        return self._request("GET", "/api/health")

    # ------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, raw: bool = False, **kwargs):
        url = self.base_url + path
        try:
            r = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.Timeout as exc:
            raise SearchAPIError(None, "timeout", f"{method} {url} timed out after {self.timeout}s") from exc
        except requests.ConnectionError as exc:
            raise SearchAPIError(None, "unreachable", f"cannot connect to {self.base_url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                code, message = err["code"], err["message"]
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", r.text[:200] or r.reason
            raise SearchAPIError(r.status_code, code, message)
        if raw:
            return r.content
        try:
            return r.json()
        except ValueError as exc:
            raise SearchAPIError(r.status_code, "invalid_response", f"{url} did not return JSON") from exc

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "SearchClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _image_payload(image: ImageInput) -> tuple[str, bytes]:
    if isinstance(image, Image.Image):
        buf = io.BytesIO()
        image.save(buf, "PNG")
        return "image.png", buf.getvalue()
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "image", bytes(image)
    if isinstance(image, (str, os.PathLike)):
        with open(image, "rb") as f:
            return os.path.basename(os.fspath(image)), f.read()
    if hasattr(image, "read"):
        name = getattr(image, "name", None)
        return (os.path.basename(name) if isinstance(name, str) else "image"), image.read()
    raise TypeError(f"image must be a path, bytes, a file object or a PIL image, not {type(image).__name__}")


def _body(**fields) -> dict:
    return {k: v for k, v in fields.items() if v is not None}


def _classified(body: dict) -> ClassifyResponse:
    preds = [Prediction(p["class"], float(p["probability"])) for p in body["predictions"]]
    return ClassifyResponse(preds, body["head"], float(body["took_ms"]))


def _response(body: dict) -> SearchResponse:
    hits = [RemoteHit(h["id"], h["path"], h["label"], float(h["score"]), h["thumbnail_url"])
            for h in body["results"]]
    return SearchResponse(hits, float(body["took_ms"]), body["backbone"], body.get("query", {}))
