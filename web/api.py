"""The JSON API under /api."""

from __future__ import annotations

import dataclasses
import io
import time
from dataclasses import dataclass

from flask import Blueprint, current_app, g, jsonify, request, send_file, url_for

from imgsearch.search.duplicates.groups import KEEP_RULES
from imgsearch.search.engine import MAX_K, SearchEngine, display_text
from imgsearch.search.errors import ImageError, quote
from imgsearch.search.query.examples import Example
from imgsearch.search.query.filters import FIELDS
from imgsearch.web.errors import ApiError
from imgsearch.web.examples import decode_image, json_examples, multipart_examples
from imgsearch.search.query.numbers import id_field, integer_field, number_field
from imgsearch.search.query.spec import Query
from imgsearch.search.query.text import check_text
from imgsearch.web.fields import filter_fields, parse_bool, parse_int
from imgsearch.web.openapi import openapi_spec
from imgsearch.web.url_fetches import fetch_query_image

api = Blueprint("api", __name__, url_prefix="/api")

MAX_THUMBNAIL = 1024
MAX_GROUPS = 1000  # duplicate groups per page
THUMBNAIL_WAIT = 10.0  # seconds a request waits for a free decode slot


def engine() -> SearchEngine:
    """The engine answering this request: one index version from start to end, even if the
    indexer publishes a new one meanwhile (the next request gets that)."""
    if "imgsearch_engine" not in g:
        g.imgsearch_engine = current_app.extensions["imgsearch"].current()
    return g.imgsearch_engine


def _hit_json(hit, size: tuple = (None, None, None)) -> dict:
    # as shown: valid UTF-8 whatever bytes a file name holds (the id names the image losslessly)
    width, height, file_size = size
    return {"id": hit.id, "path": display_text(hit.path), "label": display_text(hit.label),
            "score": round(hit.score, 6), "width": width, "height": height, "file_size": file_size,
            "thumbnail_url": url_for("api.image", row_id=hit.id, size=current_app.config["THUMBNAIL_SIZE"])}


def hits_json(eng: SearchEngine, hits) -> list[dict]:
    """The hits as the API answers them, each with its width, height and file size as indexed."""
    sizes = eng.catalog.sizes(eng.catalog.rows([h.id for h in hits])) if hits else []
    return [_hit_json(h, size) for h, size in zip(hits, sizes)]


@dataclass
class Asked:
    """What a search or classify request asks about (an image, an id, ...), and its fields (form or JSON)."""

    kind: str  # "image" | "id" | "vector" | "url" | "examples" | "text"
    fields: dict
    image: bytes | None = None
    filename: str | None = None
    row_id: int | None = None
    vector: list | None = None
    positive: list[Example] | None = None
    negative: list[Example] | None = None
    url: str | None = None
    text: str | None = None  # words, for an index whose encoder has a text tower (search/query/text.py)
    query: Query = Query()  # its options (k, offset, min_score, head, box, filter, strategy), read once

    @property
    def box(self) -> tuple | None:
        """A region of the image or of the indexed id's file (search/query/regions.py)."""
        return self.query.box

    def describe(self) -> dict:
        if self.kind == "examples":
            return {"type": "examples", "strategy": self.fields.get("strategy") or "rocchio",
                    "positive": len(self.positive), "negative": len(self.negative)}
        if self.kind == "text":
            return {"type": "text", "text": self.text}
        if self.kind == "image":
            described = {"type": "image", "filename": self.filename}
        elif self.kind == "url":
            described = {"type": "url", "url": self.url}
        else:
            described = {"type": "id", "id": self.row_id} if self.kind == "id" else {"type": "vector"}
        return described if self.box is None else dict(described, box=list(self.box))


def _with_box(asked: Asked) -> Asked:
    """The request with its options read into a ``Query`` (each bad one a 400 saying what to send), and its
    ``box`` checked against its kind: a region of an image, a URL's image or an indexed id."""
    asked.query = Query.from_fields(asked.fields)
    if asked.box is not None and asked.kind in ("vector", "examples", "text"):
        raise ApiError(400, "invalid_box", "box takes a region of one image: send it with an image, a url or an "
                                           "id, not a vector, a text or several examples")
    return asked


def _parse_query() -> Asked:
    """Multipart ``image`` or examples (+ form fields), or a JSON object (``query_of_json``); ``box`` with an
    image, a url or an id."""
    if request.mimetype == "multipart/form-data" or request.files:
        upload = request.files.get("image")
        if upload is None and "text" in request.form:
            return _with_box(Asked("text", request.form.to_dict(), text=check_text(request.form["text"])))
        if upload is None and any(side in request.files or side in request.form for side in ("positive", "negative")):
            positive, negative = multipart_examples(request.files, request.form)
            return _with_box(Asked("examples", request.form.to_dict(), positive=positive, negative=negative))
        if upload is None:
            raise ApiError(400, "missing_field", "send the query image in the multipart field 'image' (or "
                                                 "examples in 'positive' and 'negative')")
        return _with_box(Asked("image", request.form.to_dict(), image=upload.read(),
                               filename=upload.filename or "upload"))
    if not request.is_json:
        raise ApiError(400, "missing_field",
                       "send multipart/form-data with an 'image' file, or JSON with 'id' or 'vector'")
    return query_of_json(json_body())


def json_body():
    """The request's JSON (None if it is not JSON)."""
    try:
        return request.get_json(silent=True)  # silent covers syntax errors, not this one
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None


def query_of_json(body) -> Asked:
    """A JSON query: ``id``, ``vector``, ``image`` (base64) or ``positive``/``negative`` examples."""
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object such as {\"id\": 3, \"k\": 10}")
    if "positive" in body or "negative" in body:
        positive, negative = json_examples(body)
        return _with_box(Asked("examples", body, positive=positive, negative=negative))
    if "text" in body:
        others = [key for key in ("image", "url", "id", "vector") if key in body]
        if others:
            raise ApiError(400, "invalid_json", f"send one of 'text' and '{others[0]}', not both (or make them "
                                                "examples: positive and negative)")
        return _with_box(Asked("text", body, text=check_text(body["text"])))
    if "image" in body:
        return _with_box(Asked("image", body, image=decode_image(body["image"], "image"), filename="image"))
    if "url" in body:
        url = body["url"]
        if "id" in body or "vector" in body:
            raise ApiError(400, "invalid_json", "send one of 'url', 'id' and 'vector', not several")
        if not isinstance(url, str) or not url:
            raise ApiError(400, "url_not_allowed", f"url must be an http:// or https:// URL, got {quote(url)}")
        return _with_box(Asked("url", body, url=url))
    if "id" in body:
        return _with_box(Asked("id", body, row_id=id_field(body["id"], text=False)))
    if "vector" in body:
        vector = body["vector"]
        dim = engine().dim
        if not isinstance(vector, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector
        ):
            raise ApiError(400, "invalid_vector", f"vector must be a list of {dim} numbers")
        return _with_box(Asked("vector", body, vector=vector))
    raise ApiError(400, "missing_field", "the JSON body needs 'image' (base64), 'positive' examples, 'text', "
                                         "'id' or 'vector'" + (" (or 'url')" if current_app.config["ALLOW_URL_QUERIES"] else ""))


def _answer(query: Asked, by_image, by_id, by_vector):
    """Call the engine method for the query's kind; an upload's errors name its file.

    Errors (an unknown id, a vector of the wrong size, an upload that is not an image) get their
    status in web/errors.py.
    """
    region = {} if query.box is None else {"box": query.box}
    if query.kind == "url":
        if not current_app.config["ALLOW_URL_QUERIES"]:
            raise ApiError(403, "url_queries_disabled", "this server does not fetch query images from URLs "
                                                        "(its ALLOW_URL_QUERIES setting is off): upload the image")
        # refused addresses, redirects, sizes, times and types: UrlNotAllowedError (400 url_not_allowed)
        # at most MAX_URL_FETCHES at once (503 busy beyond), one deadline per request (web/url_fetches.py)
        query.image = fetch_query_image(query.url)
        query.filename = query.url
    if query.kind in ("image", "url"):
        try:
            return by_image(query.image, max_pixels=current_app.config["MAX_IMAGE_PIXELS"], **region)
        except ImageError as exc:
            raise exc.about(query.filename) from None
    if query.kind == "id":
        return by_id(query.row_id, **region)
    if query.kind in ("examples", "text"):
        what = "several examples are" if query.kind == "examples" else "a text is"
        raise ApiError(400, f"invalid_{query.kind}", f"{what} for searching; classify one image, id or vector")
    return by_vector(query.vector)


def _parse_head(raw, required: bool) -> str | None:
    eng = engine()
    if raw in (None, ""):
        if not required:
            return None
        heads = eng.head_names()
        if len(heads) == 1:
            return heads[0]
        raise ApiError(400, "missing_field", "name the head in 'head'; this index has: "
                                             + (", ".join(heads) or "none (train one with imgsearch train-head)"))
    if not isinstance(raw, str):
        raise ApiError(400, "unknown_head", f"head must be a head's name, got {quote(raw)}")
    eng.head(raw)  # a HeadError if it has no such head
    return raw


MAX_INFO_LABELS = 1000  # labels /api/info lists (the page's filter picker)


@api.post("/search")
def search():
    """Nearest images to an uploaded image, an indexed id or a vector; ``head`` for head-aware search;
    ``filter`` to search only images whose metadata it selects."""
    started = time.perf_counter()
    eng = engine()
    query = _parse_query()
    hits, q, filtered = search_hits(eng, query)
    return jsonify(results=hits_json(eng, hits), query=query.describe(), backbone=eng.backbone,
                   head=q.head, offset=q.offset, min_score=q.min_score,
                   took_ms=round((time.perf_counter() - started) * 1000, 2), **filtered)


def search_hits(eng: SearchEngine, asked: Asked):
    """(hits, the checked Query, what the answer says of its filter) of one search request: its options read
    once, here, into a ``Query`` the engine takes as it is."""
    q = dataclasses.replace(asked.query.with_default_k(current_app.config["DEFAULT_K"]),
                            max_pixels=current_app.config["MAX_IMAGE_PIXELS"])
    if q.head is not None:
        eng.head(q.head)  # an unknown head: 400 unknown_head, before anything is embedded or fetched
    filtered = filter_fields(eng, q.filter)
    if asked.kind == "examples":
        return eng.search_examples(asked.positive, asked.negative, query=q), q, filtered
    if asked.kind == "text":
        return eng.search_text(asked.text, query=q), q, filtered
    hits = _answer(asked, lambda image, **_: eng.search_image(image, query=q),
                   lambda row_id, **_: eng.search_id(row_id, query=q),
                   lambda vector: eng.search_vector(vector, query=q))
    return hits, q, filtered


@api.post("/classify")
def classify():
    """Class probabilities of a trained head for an uploaded image, an indexed id or a vector."""
    started = time.perf_counter()
    eng = engine()
    query = _parse_query()
    head = _parse_head(query.fields.get("head"), required=True)
    top = parse_int(query.fields.get("top"), "top", 5, 1, 1000)
    predictions = _answer(query, lambda image, **kw: eng.classify(image, head, top, **kw),
                          lambda row_id, **kw: eng.classify_id(row_id, head, top, **kw),
                          lambda vector: eng.classify_vector(vector, head, top))
    return jsonify(head=head, predictions=[{"class": c, "probability": round(p, 6)} for c, p in predictions],
                   query=query.describe(), took_ms=round((time.perf_counter() - started) * 1000, 2))


def _parse_threshold(raw) -> float | None:
    if raw is None or raw == "":
        return None  # the calibrated default
    return number_field(raw, "threshold", 0, 1, " (a cosine score)", above_low=True)


def duplicate_options(fields) -> tuple[float | None, str | None, bool]:
    """(threshold, keep, keypoints) of a duplicates request (a query string or a JSON object), checked once
    here for GET /api/duplicates and its jobs (web/duplicates_jobs.py): 400 saying what to change."""
    threshold = _parse_threshold(fields.get("threshold"))
    keep = fields.get("keep") or None
    if keep is not None and keep not in KEEP_RULES:
        raise ApiError(400, "invalid_keep", f"keep must be one of {', '.join(KEEP_RULES)}, got {quote(keep)}")
    return threshold, keep, parse_bool(fields.get("keypoints"), "keypoints", True)


def duplicates_window() -> tuple[int, int]:
    """(offset, limit) of the page of groups this request asks for."""
    return (parse_int(request.args.get("offset"), "offset", 0, 0, 2**31 - 1),
            parse_int(request.args.get("limit"), "limit", 20, 1, MAX_GROUPS))


def duplicates_json(report, offset: int, limit: int, started: float) -> dict:
    """One page of ``report``'s groups, as GET /api/duplicates answers and a finished job's ``result``."""
    page = report.groups[offset:offset + limit]
    return dict(groups=[_group_json(g) for g in page], total=len(report.groups), offset=offset, limit=limit,
                threshold=report.threshold, keep=report.keep, keypoints=report.keypoints,
                confirmed=report.confirmed, refuted=report.refuted, generation=report.generation,
                images=report.images, method=report.method, seconds=report.seconds,
                took_ms=round((time.perf_counter() - started) * 1000, 2))


def _group_json(group) -> dict:
    size = current_app.config["THUMBNAIL_SIZE"]
    return {"group": group.group, "ids": group.ids, "paths": [display_text(p) for p in group.paths],
            "scores": group.scores, "keep": group.keep, "exact": group.exact,
            "evidence": group.evidence, "sizes": group.sizes,
            "thumbnail_urls": [url_for("api.image", row_id=i, size=size) for i in group.ids]}


@api.get("/duplicates")
def duplicates():
    """Groups of near-duplicate images and of exact copies, a page at a time.

    Computed once per index version, threshold and keeper rule (the engine of a version caches
    them; a newly published version is a new engine, so nothing stale is served).  A long computation
    is better started as a job with progress and a cancel: POST /api/duplicates/jobs.
    """
    started = time.perf_counter()
    eng = engine()
    threshold, keep, keypoints = duplicate_options(request.args)
    offset, limit = duplicates_window()
    return jsonify(duplicates_json(eng.duplicates(threshold, keep, keypoints), offset, limit, started))


@api.get("/images/<row_id>")
def image(row_id: str):
    """An indexed image, re-encoded as JPEG; ``?size=N`` fits it in N x N pixels."""
    eng = engine()
    row_id = id_field(row_id)  # the path's text, read as every id is: 400 invalid_id if it is not one
    eng.get(row_id)  # an UnknownIdError (404) before the size is looked at
    size = request.args.get("size")
    if size is not None:
        size = integer_field(size, "size", 16, MAX_THUMBNAIL)
    # decodes are the costly part (memory): at most THUMBNAIL_DECODES at once, the rest wait a while
    slots = current_app.extensions["imgsearch_thumbnail_slots"]
    if not slots.acquire(timeout=THUMBNAIL_WAIT):
        raise ApiError(503, "busy", f"more than {current_app.config['THUMBNAIL_DECODES']} images are being "
                                    "decoded; try again in a moment")
    try:
        # an ImageUnavailableError (404) if its file is gone, ImageTooLargeError (413) over the decode budget
        data = eng.thumbnail(row_id, size, max_decoded_pixels=current_app.config["THUMBNAIL_MAX_PIXELS"])
    finally:
        slots.release()
    response = send_file(io.BytesIO(data), mimetype="image/jpeg", max_age=3600)
    return response


@api.get("/info")
def info():
    eng = engine()
    data = eng.info()
    return jsonify(backbone=data["backbone"], count=data["count"], dim=data["dim"], metric=data["metric"],
                   index_type=data["index_type"], updated=data["updated"], generation=data["generation"],
                   on_disk=bool((data.get("ann") or {}).get("lists_file")),  # IVF lists memory-mapped, CPU
                   max_k=MAX_K,
                   heads=data["heads"], whitening=bool(data["whitening"]),
                   labels=[display_text(x) for x in eng.labels()[:MAX_INFO_LABELS]],
                   filter_fields=list(FIELDS),
                   max_upload_bytes=current_app.config["MAX_CONTENT_LENGTH"],
                   url_queries=bool(current_app.config["ALLOW_URL_QUERIES"]),
                   max_image_pixels=current_app.config["MAX_IMAGE_PIXELS"])


@api.get("/health")
def health():
    eng = engine()
    health = eng.health()
    if getattr(current_app.extensions["imgsearch"], "last_error", None) is not None:  # a ReloadingEngine's
        reasons = health.get("reasons", []) + [
            f"the newest published version cannot be opened (the server log says why): version "
            f"{eng.generation} is served until it is repaired ('imgsearch verify --repair')"]
        health = {"status": "degraded", "reason": "; ".join(reasons), "reasons": reasons}
    # 200 while degraded: the server answers every query that does not read the damage; a 503 here would make
    # a load balancer drop it, and every query with it
    return jsonify(**health, count=len(eng))


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_spec(engine().dim, current_app.config["MAX_CONTENT_LENGTH"]))
