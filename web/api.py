"""The JSON API under /api."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass

from flask import Blueprint, current_app, g, jsonify, request, send_file, url_for

from search.duplicates import KEEP_RULES
from search.engine import MAX_K, SearchEngine, display_text
from search.errors import ImageError, quote
from search.filters import FIELDS, parse_filter
from web.errors import ApiError
from web.openapi import openapi_spec

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


def _parse_bool(raw, name: str, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    value = str(raw).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ApiError(400, f"invalid_{name}", f"{name} must be true or false, got {quote(raw)}")


def _parse_int(raw, name: str, default: int, low: int, high: int) -> int:
    if raw is None or raw == "":
        return default
    bad = ApiError(400, f"invalid_{name}", f"{name} must be an integer between {low} and {high}, got {quote(raw)}")
    if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
        raise bad
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise bad from None
    if not low <= value <= high:
        raise bad
    return value


def _parse_k(raw) -> int:
    return _parse_int(raw, "k", current_app.config["DEFAULT_K"], 1, MAX_K)


def _hit_json(hit) -> dict:
    # as shown: valid UTF-8 whatever bytes a file name holds (the id names the image losslessly)
    return {"id": hit.id, "path": display_text(hit.path), "label": display_text(hit.label),
            "score": round(hit.score, 6),
            "thumbnail_url": url_for("api.image", row_id=hit.id, size=current_app.config["THUMBNAIL_SIZE"])}


@dataclass
class Query:
    """What a search or classify request asks about, and its other fields (form or JSON)."""

    kind: str  # "image" | "id" | "vector"
    fields: dict
    image: bytes | None = None
    filename: str | None = None
    row_id: int | None = None
    vector: list | None = None

    def describe(self) -> dict:
        if self.kind == "image":
            return {"type": "image", "filename": self.filename}
        return {"type": "id", "id": self.row_id} if self.kind == "id" else {"type": "vector"}


def _parse_query() -> Query:
    """Multipart ``image`` (+ form fields), or a JSON object with ``id`` or ``vector``."""
    if request.mimetype == "multipart/form-data" or request.files:
        upload = request.files.get("image")
        if upload is None:
            raise ApiError(400, "missing_field", "send the query image in the multipart field 'image'")
        return Query("image", request.form.to_dict(), image=upload.read(), filename=upload.filename or "upload")
    if not request.is_json:
        raise ApiError(400, "missing_field",
                       "send multipart/form-data with an 'image' file, or JSON with 'id' or 'vector'")
    try:
        body = request.get_json(silent=True)  # silent covers syntax errors, not this one
    except RecursionError:
        raise ApiError(400, "invalid_json", "the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object such as {\"id\": 3, \"k\": 10}")
    if "id" in body:
        row_id = body["id"]
        if isinstance(row_id, bool) or not isinstance(row_id, int):
            raise ApiError(400, "invalid_id", f"id must be an integer, got {quote(row_id)}")
        return Query("id", body, row_id=row_id)
    if "vector" in body:
        vector = body["vector"]
        dim = engine().dim
        if not isinstance(vector, list) or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector
        ):
            raise ApiError(400, "invalid_vector", f"vector must be a list of {dim} numbers")
        return Query("vector", body, vector=vector)
    raise ApiError(400, "missing_field", "the JSON body needs 'id' or 'vector'")


def _answer(query: Query, by_image, by_id, by_vector):
    """Call the engine method for the query's kind; an upload's errors name its file.

    Errors (an unknown id, a vector of the wrong size, an upload that is not an image) get their
    status in web/errors.py.
    """
    if query.kind == "image":
        try:
            return by_image(query.image, max_pixels=current_app.config["MAX_IMAGE_PIXELS"])
        except ImageError as exc:
            raise exc.about(query.filename) from None
    if query.kind == "id":
        return by_id(query.row_id)
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


def _parse_filter(raw):
    """``filter``: a JSON object (in a multipart form, its JSON text), ``search/filters.py``; None if absent."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            raise ApiError(400, "invalid_filter", "filter must be a JSON object such as {\"label\": [\"cats\"]}, "
                                                  f"got {quote(raw)}") from None
    return parse_filter(raw)  # InvalidFilterError: 400 invalid_filter


def _filter_fields(eng, flt) -> dict:
    """What a filtered answer says about its filter: as read, how many images it selects, and a note
    when none (an empty result list, not an error: the filter is valid, the index has no such image)."""
    if flt is None:
        return {}
    matched = eng.matching(flt)  # an unknown label fails here, before an upload is embedded
    note = {"note": "no indexed image matches the filter"} if matched == 0 else {}
    return {"filter": flt.describe(), "matched": matched, **note}


@api.post("/search")
def search():
    """Nearest images to an uploaded image, an indexed id or a vector; ``head`` for head-aware search;
    ``filter`` to search only images whose metadata it selects."""
    started = time.perf_counter()
    eng = engine()
    query = _parse_query()
    k = _parse_k(query.fields.get("k"))
    head = _parse_head(query.fields.get("head"), required=False)
    flt = _parse_filter(query.fields.get("filter"))
    filtered = _filter_fields(eng, flt)
    hits = _answer(query, lambda image, **kw: eng.search_image(image, k, head=head, filter=flt, **kw),
                   lambda row_id: eng.search_id(row_id, k, head=head, filter=flt),
                   lambda vector: eng.search_vector(vector, k, head=head, filter=flt))
    return jsonify(results=[_hit_json(h) for h in hits], query=query.describe(), backbone=eng.backbone,
                   head=head, took_ms=round((time.perf_counter() - started) * 1000, 2), **filtered)


@api.post("/classify")
def classify():
    """Class probabilities of a trained head for an uploaded image, an indexed id or a vector."""
    started = time.perf_counter()
    eng = engine()
    query = _parse_query()
    head = _parse_head(query.fields.get("head"), required=True)
    top = _parse_int(query.fields.get("top"), "top", 5, 1, 1000)
    predictions = _answer(query, lambda image, **kw: eng.classify(image, head, top, **kw),
                          lambda row_id: eng.classify_id(row_id, head, top),
                          lambda vector: eng.classify_vector(vector, head, top))
    return jsonify(head=head, predictions=[{"class": c, "probability": round(p, 6)} for c, p in predictions],
                   query=query.describe(), took_ms=round((time.perf_counter() - started) * 1000, 2))


def _parse_threshold(raw) -> float | None:
    if raw is None or raw == "":
        return None  # the calibrated default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:  # NaN fails too
        raise ApiError(400, "invalid_threshold", f"threshold must be a number in (0, 1] (a cosine score), "
                                                 f"got {quote(raw)}")
    return value


def _group_json(group) -> dict:
    size = current_app.config["THUMBNAIL_SIZE"]
    return {"group": group.group, "ids": group.ids, "paths": [display_text(p) for p in group.paths],
            "scores": group.scores, "keep": group.keep, "exact": group.exact,
            "thumbnail_urls": [url_for("api.image", row_id=i, size=size) for i in group.ids]}


@api.get("/duplicates")
def duplicates():
    """Groups of near-duplicate images and of exact copies, a page at a time.

    Computed once per index version, threshold and keeper rule (the engine of a version caches
    them; a newly published version is a new engine, so nothing stale is served).
    """
    started = time.perf_counter()
    eng = engine()
    threshold = _parse_threshold(request.args.get("threshold"))
    keep = request.args.get("keep") or None
    if keep is not None and keep not in KEEP_RULES:
        raise ApiError(400, "invalid_keep", f"keep must be one of {', '.join(KEEP_RULES)}, got {quote(keep)}")
    offset = _parse_int(request.args.get("offset"), "offset", 0, 0, 2**31 - 1)
    limit = _parse_int(request.args.get("limit"), "limit", 20, 1, MAX_GROUPS)
    keypoints = _parse_bool(request.args.get("keypoints"), "keypoints", True)
    report = eng.duplicates(threshold, keep, keypoints)
    page = report.groups[offset:offset + limit]
    return jsonify(groups=[_group_json(g) for g in page], total=len(report.groups), offset=offset, limit=limit,
                   threshold=report.threshold, keep=report.keep, keypoints=report.keypoints,
                   confirmed=report.confirmed, refuted=report.refuted, generation=report.generation,
                   images=report.images, method=report.method,
                   took_ms=round((time.perf_counter() - started) * 1000, 2))


@api.get("/images/<int:row_id>")
def image(row_id: int):
    """An indexed image, re-encoded as JPEG; ``?size=N`` fits it in N x N pixels."""
    eng = engine()
    eng.get(row_id)  # an UnknownIdError (404) before the size is looked at
    size = request.args.get("size")
    if size is not None:
        try:
            size = int(size)
        except ValueError:
            raise ApiError(400, "invalid_size", f"size must be an integer, got {quote(size)}") from None
        if not 16 <= size <= MAX_THUMBNAIL:
            raise ApiError(400, "invalid_size", f"size must be between 16 and {MAX_THUMBNAIL}, got {size}")
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
                   max_k=MAX_K,
                   heads=data["heads"], whitening=bool(data["whitening"]),
                   labels=[display_text(x) for x in eng.labels()[:MAX_INFO_LABELS]],
                   filter_fields=list(FIELDS),
                   max_upload_bytes=current_app.config["MAX_CONTENT_LENGTH"],
                   max_image_pixels=current_app.config["MAX_IMAGE_PIXELS"])


@api.get("/health")
def health():
    eng = engine()
    return jsonify(status="ok", count=len(eng))


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_spec(engine().dim, current_app.config["MAX_CONTENT_LENGTH"]))
