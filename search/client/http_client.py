"""Python client for an imgsearch server's JSON API.

    client = SearchClient("http://127.0.0.1:8000")
    for hit in client.search("query.jpg", k=5):
        print(hit.score, hit.label, hit.path)
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
from typing import BinaryIO, Sequence, Union

import requests
from PIL import Image

from imgsearch.search.client.duplicates import DuplicatesCalls, _body, _object
from imgsearch.search.client.replies import (  # noqa: F401 - callers import the reply types from here
    ClassifyResponse,
    DuplicatesPage,
    Prediction,
    RemoteDuplicateGroup,
    RemoteDuplicatesJob,
    RemoteExplanation,
    RemoteHit,
    SearchAPIError,
    SearchResponse,
)
from imgsearch.search.client.replies import (
    classified as _classified,
)
from imgsearch.search.client.replies import (
    explained as _explained,
)
from imgsearch.search.client.replies import (
    response as _response,
)
from imgsearch.search.errors import InvalidBoxError, InvalidFieldError, InvalidFilterError
from imgsearch.search.query.examples import Example, as_example
from imgsearch.search.query.numbers import number_field
from imgsearch.search.query.spec import Query
from imgsearch.search.query.text import check_text
from imgsearch.search.client.transport import (
    TransportError,
    check_base_url,
    fetch,
    session_with_deadlines,
)

ImageInput = Union[str, os.PathLike, bytes, BinaryIO, Image.Image]


DEFAULT_MAX_RESPONSE_BYTES = 64 * 2**20  # k=1000 results are ~200 KB, a 1024 px thumbnail well under 1 MB


class SearchClient(DuplicatesCalls):
    def __init__(self, base_url: str, *, timeout: float | tuple[float, float] = (3.05, 60.0),
                 deadline: float | None = None, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 session: requests.Session | None = None, api_key: str | None = None):
        """``timeout``: seconds, or (connect, read) seconds, for each socket operation;
        ``deadline``: seconds a whole call may take, however slowly the server answers
        (default: connect + read timeout); ``max_response_bytes``: the largest reply accepted.
        ``api_key``: sent as ``Authorization: Bearer`` (default: ``$IMGSEARCH_API_KEY``), for servers that
        need one (``imgsearch keys create``).  Every failure raises ``SearchAPIError``.
        """
        try:
            self.base_url = check_base_url(base_url)
        except TransportError as exc:
            raise SearchAPIError(None, exc.code, str(exc)) from None
        self.timeout = timeout
        self.deadline = float(deadline if deadline is not None else sum(timeout) if isinstance(timeout, tuple)
                              else 2 * timeout)
        if self.deadline <= 0:
            raise SearchAPIError(None, "invalid_deadline", f"deadline must be > 0 seconds, got {deadline!r}")
        self.max_response_bytes = int(max_response_bytes)
        self.session = session_with_deadlines(session)
        api_key = api_key if api_key is not None else os.environ.get("IMGSEARCH_API_KEY")
        if api_key is not None:
            if not isinstance(api_key, str) or not api_key.strip() or any(c in api_key for c in "\r\n"):
                raise SearchAPIError(None, "invalid_api_key", "api_key must be the key imgsearch keys create printed")
            self.session.headers["Authorization"] = f"Bearer {api_key.strip()}"

    # ------------------------------------------------------------ queries
    def search(self, image: ImageInput | None = None, k: int | None = None, *, head: str | None = None,
               min_score: float | None = None, offset: int | None = None,
               box: Sequence[float] | None = None, url: str | None = None,
               filter: dict | None = None) -> SearchResponse:
        """Nearest indexed images to ``image``: a path, bytes, file object or PIL image; or, with ``url``
        instead, to the image the server fetches from that http(s) URL (if it allows URL queries).

        ``head``: blend in that head's class probabilities (head-aware search).  ``k`` results (None:
        the server's default, or with ``min_score`` all that reach it) from rank ``offset``.
        ``box``: search by that region, ``[x0, y0, x1, y1]`` fractions of the image's width and height.
        ``filter``: only images whose metadata it selects, e.g. ``{"label": ["cats"], "width": {">=": 640}}``
        (README, Filters).
        """
        if (image is None) == (url is None):
            raise TypeError("pass an image or url=..., one of them")
        options = _options(k, head=head, box=box, min_score=min_score, offset=offset, filter=filter)
        if url is not None:
            return self._parsed(_response, self._request("POST", "/api/search", json={"url": url, **options}))
        name, data = _image_payload(image)
        fields = {key: value if isinstance(value, str) else json.dumps(value) for key, value in options.items()}
        reply = self._request("POST", "/api/search", files={"image": (name, data)}, data=fields)
        return self._parsed(_response, reply)

    def search_id(self, row_id: int, k: int | None = None, *, head: str | None = None,
                  min_score: float | None = None, offset: int | None = None,
                  box: Sequence[float] | None = None, filter: dict | None = None) -> SearchResponse:
        """Nearest indexed images to image ``row_id`` (itself left out); with ``box``, to that region of it."""
        body = {"id": row_id, **_options(k, head=head, min_score=min_score, offset=offset, box=box, filter=filter)}
        return self._parsed(_response, self._request("POST", "/api/search", json=body))

    def search_text(self, text: str, k: int | None = None, *, head: str | None = None,
                    min_score: float | None = None, offset: int | None = None,
                    filter: dict | None = None) -> SearchResponse:
        """Nearest indexed images to the words ``text`` (an index built with an image-text preset such as
        SigLIP; another answers 400 ``text_queries_unsupported``)."""
        try:
            text = check_text(text)
        except InvalidFieldError as exc:
            raise SearchAPIError(None, "invalid_text", str(exc)) from None
        body = {"text": text, **_options(k, head=head, min_score=min_score, offset=offset, filter=filter)}
        return self._parsed(_response, self._request("POST", "/api/search", json=body))

    def search_vector(self, vector: Sequence[float], k: int | None = None, *, head: str | None = None,
                      min_score: float | None = None, offset: int | None = None,
                      filter: dict | None = None) -> SearchResponse:
        body = {"vector": _numbers(vector, "vector"),
                **_options(k, head=head, min_score=min_score, offset=offset, filter=filter)}
        return self._parsed(_response, self._request("POST", "/api/search", json=body))

    def search_examples(self, positive: Sequence, negative: Sequence = (), k: int | None = None, *,
                        strategy: str | None = None, head: str | None = None, min_score: float | None = None,
                        offset: int | None = None, filter: dict | None = None) -> SearchResponse:
        """Nearest indexed images to several examples: each an id (int), a vector, an image (path, bytes,
        file, PIL image) or an ``Example`` with a weight (``Example.of_text("a red car")``: words); ``strategy``
        "rocchio" (the server's default) or "best"."""
        body = _body(positive=_examples_json(positive, "positive"),
                     negative=_examples_json(negative, "negative") or None,
                     **_options(k, strategy=strategy, head=head, min_score=min_score, offset=offset, filter=filter))
        return self._parsed(_response, self._request("POST", "/api/search", json=body))

    def search_many(self, queries: Sequence, k: int | None = None, *, head: str | None = None,
                    min_score: float | None = None, offset: int | None = None,
                    strategy: str | None = None) -> list[SearchResponse | SearchAPIError]:
        """Several searches in one request (``POST /api/search/batch``), answered in order.

        Each query is an id, a vector, an image, or a dict as the JSON API takes it (its
        ``positive``/``negative`` items may be ids, vectors, images or ``Example``s); the keyword
        arguments apply where a query does not say.  A query that fails is its ``SearchAPIError`` in
        the list, not raised; a batch the server refuses as a whole raises one.
        """
        shared = _options(k, head=head, min_score=min_score, offset=offset, strategy=strategy)
        body = {"queries": [{**shared, **_query_json(q, f"queries[{i}]")} for i, q in enumerate(queries)]}
        return self._parsed(_batch, self._request("POST", "/api/search/batch", json=body))

    def classify(self, image: ImageInput, head: str | None = None, top: int = 5) -> ClassifyResponse:
        """Class probabilities of a trained head (the only one, if ``head`` is None) for ``image``."""
        name, data = _image_payload(image)
        fields = {"top": str(top), **({"head": head} if head else {})}
        reply = self._request("POST", "/api/classify", files={"image": (name, data)}, data=fields)
        return self._parsed(_classified, reply)

    def classify_id(self, row_id: int, head: str | None = None, top: int = 5) -> ClassifyResponse:
        reply = self._request("POST", "/api/classify", json=_body(id=row_id, head=head, top=top))
        return self._parsed(_classified, reply)

    def explain(self, query: ImageInput | int, result_id: int, *, head: str | None = None,
                box: Sequence[float] | None = None) -> RemoteExplanation:
        """Why ``result_id`` matches ``query`` (an image, or an int: an indexed id): the score split over
        both images' cells.  ``head``: the head-aware score's split, the head's term apart.  ``box``: explain
        that region of the query, as a search with that box scores it (a bad one: SearchAPIError invalid_box)."""
        box = _options(box=box).get("box")  # checked before anything is sent
        if isinstance(query, int) and not isinstance(query, bool):
            reply = self._request("POST", "/api/explain",
                                  json=_body(query={"id": query}, id=result_id, head=head, box=box))
        else:
            name, data = _image_payload(query)
            fields = {"id": str(result_id), **({"head": head} if head else {}),
                      **({"box": ",".join(map(repr, box))} if box else {})}
            reply = self._request("POST", "/api/explain", files={"image": (name, data)}, data=fields)
        return self._parsed(_explained, reply)

    def image(self, row_id: int, size: int | None = None) -> bytes:
        """An indexed image as JPEG bytes, fitted in size x size if given."""
        params = {"size": size} if size else None
        return self._request("GET", f"/api/images/{row_id}", params=params, raw=True)

    def info(self) -> dict:
        return self._parsed(_object, self._request("GET", "/api/info"))

    def health(self) -> dict:
        return self._parsed(_object, self._request("GET", "/api/health"))

    # ------------------------------------------------------------ heads (web/heads_api.py)
    def heads(self) -> dict:
        """{"heads": [summaries], "training": {"allowed", "why"}, ...}: the server's heads and whether it trains."""
        return self._parsed(_object, self._request("GET", "/api/heads"))

    def create_head(self, name: str, examples: dict | None = None, *, model: str | None = None,
                    search_weight: float | None = None, zero_shot: Sequence[str] | None = None,
                    scale: str | float | None = None, templates: Sequence[str] | None = None) -> dict:
        """Teach head ``name`` from ``examples`` ({class: [ids, vectors or images]}); the head's summary with
        its cross-validated metrics.  Or, with ``zero_shot`` (class names) instead, make it from the names alone
        by the index's text tower (``scale``: "preset", "labels" or a number; ``templates``: prompts with {}).
        SearchAPIError 403 where the server may not train."""
        if zero_shot is not None:
            if examples is not None or model is not None:
                raise TypeError("a zero-shot head is made from class names alone: leave out examples and model")
            body = _body(name=name, zero_shot=list(zero_shot), scale=scale, search_weight=search_weight,
                         templates=None if templates is None else list(templates))
            return self._parsed(lambda b: _object(b["head"]), self._request("POST", "/api/heads", json=body))
        if not isinstance(examples, dict):
            raise TypeError("examples must be a dict of class name -> list of examples")
        body = _body(name=name, model=model, search_weight=search_weight,
                     examples={str(c): _examples_json(items, f"examples[{c!r}]") for c, items in examples.items()})
        return self._parsed(lambda b: _object(b["head"]), self._request("POST", "/api/heads", json=body))

    def delete_head(self, name: str) -> None:
        self._request("DELETE", f"/api/heads/{name}")

    # reviewing duplicate groups (web/review_api.py); marking and removing need write permission
    # ------------------------------------------------------------ plumbing
    def _request(self, method: str, path: str, raw: bool = False, **kwargs):
        url = self.base_url + path
        try:
            r = fetch(self.session, method, url, timeout=self.timeout, deadline=self.deadline,
                      max_bytes=self.max_response_bytes, **kwargs)
        except TransportError as exc:
            raise SearchAPIError(None, exc.code, str(exc)) from exc
        if r.status >= 400:
            try:
                err = json.loads(r.body)["error"]
                code, message = str(err["code"]), str(err["message"])
            except (ValueError, KeyError, TypeError):
                code, message = "http_error", r.body[:200].decode("utf-8", "replace") or r.reason
            retry = str(r.headers.get("Retry-After", ""))
            raise SearchAPIError(r.status, code, message, float(retry) if retry.isdigit() else None)
        if raw:
            return r.body
        try:
            return json.loads(r.body)
        except ValueError as exc:
            raise SearchAPIError(r.status, "invalid_response", f"{url} did not return JSON") from exc

    def _parsed(self, parse, body):
        """``parse(body)``, or SearchAPIError when the server's JSON is not what this client expects."""
        try:
            return parse(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SearchAPIError(200, "invalid_response", f"{self.base_url} answered JSON this client does not "
                                                          f"understand ({exc.__class__.__name__}: {exc})") from exc

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


def _options(k=None, **fields) -> dict:
    """A query's options as the API reads them, checked here first by the rules the server applies
    (``Query``, search/query/spec.py): a bad one raises before anything is sent."""
    try:
        return Query.of(k, **fields).to_fields()
    except InvalidFieldError as exc:  # the code and message the server would answer with (a 400)
        raise SearchAPIError(None, f"invalid_{exc.field}", str(exc)) from None
    except InvalidBoxError as exc:
        raise SearchAPIError(None, "invalid_box", str(exc)) from None
    except InvalidFilterError as exc:
        raise SearchAPIError(None, "invalid_filter", str(exc)) from None


def _numbers(values, name: str) -> list[float]:
    """A vector's numbers as JSON takes them, read by the one strict parser (10**400 or NaN: InvalidFieldError,
    before anything is sent)."""
    return [number_field(x, name, -math.inf, math.inf, text=False) for x in values]


def _example_json(item, name: str) -> dict:
    if isinstance(item, dict):
        return item  # already as the API takes it
    ex = as_example(item, name)
    if ex.kind == "id":
        value = ex.value
    elif ex.kind == "vector":
        value = _numbers(ex.value, f"{name} vector")
    elif ex.kind == "text":
        value = ex.value
    else:
        value = base64.b64encode(_image_payload(ex.value)[1]).decode("ascii")
    return {ex.kind: value, **({"weight": ex.weight} if ex.weight != 1.0 else {})}


def _examples_json(items: Sequence, name: str) -> list[dict]:
    return [_example_json(x, f"{name}[{i}]") for i, x in enumerate(items)]


def _query_json(query, name: str) -> dict:
    """One query of a batch as JSON: a dict as given (its examples converted), else one example's fields."""
    if isinstance(query, dict):
        out = dict(query)
        for side in ("positive", "negative"):
            if side in out and isinstance(out[side], (list, tuple)):
                out[side] = [_example_json(x, f"{name}.{side}[{i}]") for i, x in enumerate(out[side])]
        return out
    out = _example_json(query if isinstance(query, Example) else as_example(query, name), name)
    out.pop("weight", None)  # a weight means something only among several examples
    return out


def _batch(body: dict) -> list[SearchResponse | SearchAPIError]:
    took, backbone = float(body["took_ms"]), body["backbone"]
    answers = []
    for item in body["results"]:
        if isinstance(item, dict):
            err = item["error"]
            answers.append(SearchAPIError(int(item["status"]), str(err["code"]), str(err["message"])))
        else:
            answers.append(_response({"results": item, "took_ms": took, "backbone": backbone}))
    return answers
