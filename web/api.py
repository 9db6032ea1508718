"""The JSON API under /api."""

from __future__ import annotations

import io
import time

from flask import Blueprint, current_app, jsonify, request, send_file, url_for

from indexer.images import ImageDecodeError, load_rgb
from search.engine import MAX_K, SearchEngine, UnknownIdError

from .errors import ApiError
from .openapi import openapi_spec

api = Blueprint("api", __name__, url_prefix="/api")

MAX_THUMBNAIL = 1024


def engine() -> SearchEngine:
    return current_app.extensions["imgsearch"]


def _parse_k(raw) -> int:
    if raw is None or raw == "":
        return current_app.config["DEFAULT_K"]
    if isinstance(raw, bool) or isinstance(raw, float) and not raw.is_integer():
        raise ApiError(400, "invalid_k", f"k must be an integer between 1 and {MAX_K}, got {raw!r}")
    try:
        k = int(raw)
    except (TypeError, ValueError):
        raise ApiError(400, "invalid_k", f"k must be an integer between 1 and {MAX_K}, got {raw!r}") from None
    if not 1 <= k <= MAX_K:
        raise ApiError(400, "invalid_k", f"k must be between 1 and {MAX_K}, got {k}")
    return k


def _hit_json(hit) -> dict:
    return {"id": hit.id, "path": hit.path, "label": hit.label, "score": round(hit.score, 6),
            "thumbnail_url": url_for("api.image", row_id=hit.id, size=current_app.config["THUMBNAIL_SIZE"])}


@api.post("/search")
def search():
    """Multipart ``image`` (+ form ``k``), or JSON ``{"id"|"vector": ..., "k": ...}``."""
    started = time.perf_counter()
    eng = engine()
    if request.mimetype == "multipart/form-data" or request.files:
        upload = request.files.get("image")
        if upload is None:
            raise ApiError(400, "missing_field", "send the query image in the multipart field 'image'")
        k = _parse_k(request.form.get("k"))
        data = upload.read()
        try:
            hits = eng.search_image(data, k)
        except ImageDecodeError as exc:
            name = upload.filename or "upload"
            raise ApiError(400, "invalid_image", f"{name}: {exc}") from None
        query = {"type": "image", "filename": upload.filename}
    elif request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_json", "the body must be a JSON object such as {\"id\": 3, \"k\": 10}")
        k = _parse_k(body.get("k"))
        if "id" in body:
            row_id = body["id"]
            if isinstance(row_id, bool) or not isinstance(row_id, int):
                raise ApiError(400, "invalid_id", f"id must be an integer, got {row_id!r}")
            try:
                hits = eng.search_id(row_id, k)
            except UnknownIdError as exc:
                raise ApiError(404, "not_found", str(exc)) from None
            query = {"type": "id", "id": row_id}
        elif "vector" in body:
            vector = body["vector"]
            if not isinstance(vector, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector
            ):
                raise ApiError(400, "invalid_vector", f"vector must be a list of {eng.dim} numbers")
            try:
                hits = eng.search_vector(vector, k)
            except ValueError as exc:
                raise ApiError(400, "invalid_vector", str(exc)) from None
            query = {"type": "vector"}
        else:
            raise ApiError(400, "missing_field", "the JSON body needs 'id' or 'vector'")
    else:
        raise ApiError(400, "missing_field",
                       "send multipart/form-data with an 'image' file, or JSON with 'id' or 'vector'")
    return jsonify(results=[_hit_json(h) for h in hits], query=query, backbone=eng.backbone,
                   took_ms=round((time.perf_counter() - started) * 1000, 2))


@api.get("/images/<int:row_id>")
def image(row_id: int):
    """An indexed image, re-encoded as JPEG; ``?size=N`` fits it in N x N pixels."""
    eng = engine()
    try:
        hit = eng.get(row_id)
    except UnknownIdError as exc:
        raise ApiError(404, "not_found", str(exc)) from None
    size = request.args.get("size")
    if size is not None:
        try:
            size = int(size)
        except ValueError:
            raise ApiError(400, "invalid_size", f"size must be an integer, got {size!r}") from None
        if not 16 <= size <= MAX_THUMBNAIL:
            raise ApiError(400, "invalid_size", f"size must be between 16 and {MAX_THUMBNAIL}, got {size}")
    try:
        img, _, _ = load_rgb(hit.path, min_size=size)
    except ImageDecodeError as exc:
        # the path comes from the index, never from the request
        raise ApiError(404, "image_unavailable", f"image {row_id} is in the index but its file is not "
                                                 f"readable any more: {exc}") from None
    if size:
        img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    buf.seek(0)
    response = send_file(buf, mimetype="image/jpeg", max_age=3600)
    return response


@api.get("/info")
def info():
    eng = engine()
    data = eng.info()
    return jsonify(backbone=data["backbone"], count=data["count"], dim=data["dim"], metric=data["metric"],
                   index_type=data["index_type"], updated=data["updated"], max_k=MAX_K,
                   max_upload_bytes=current_app.config["MAX_CONTENT_LENGTH"])


@api.get("/health")
def health():
    eng = engine()
    return jsonify(status="ok", count=len(eng))


@api.get("/openapi.json")
def openapi():
    return jsonify(openapi_spec(engine().dim, current_app.config["MAX_CONTENT_LENGTH"]))
