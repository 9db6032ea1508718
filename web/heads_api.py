"""Heads over HTTP: list them, teach one from examples (``POST /api/heads``), delete one.

Training writes the index folder, and web never writes it itself (it goes through
search, which only reads): the server runs the same command a person would,
``imgsearch train-head --examples - --json --no-wait``, with the checked examples
on its standard input.  The command holds the folder's writer lock for the
write (a killed or crashed training leaves the last head whole: its files are
replaced in one rename); the server runs one training at a time (others wait
up to ``TRAINING_WAIT`` seconds), and one that finds another writer at work
(an indexing run, a training from the command line) gets 409.  The new head is
served at once: the engine's heads follow their files (``search/heads.py``).

Who may train: web/auth.py decides, by API key (a write key off loopback, or with
``--require-key``; anyone on loopback otherwise).  Every answer about heads says
whether this request may (``training``: ``allowed`` and ``why``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

from flask import Blueprint, current_app, jsonify, request, url_for

from imgsearch.search.errors import ImageError, InvalidFieldError, InvalidInputError, UnknownIdError, quote
from imgsearch.search.heads import DEFAULT_MODEL, MODELS, NAME_PATTERN, head_summary
from imgsearch.search.query.text import check_text_queries
from imgsearch.search.query.numbers import id_field, number_field
from imgsearch.web.api import engine as _engine
from imgsearch.web.auth import write_permission
from imgsearch.web.errors import ApiError, error_of
from imgsearch.web.examples import decode_image

log = logging.getLogger(__name__)

heads_api = Blueprint("heads_api", __name__, url_prefix="/api")

MAX_TEACH_EXAMPLES = 1000  # in one request, all classes together: a page's handful, with room
MAX_TEACH_IMAGES = 50  # of them uploaded images, each embedded by this server
MAX_CLASSES = 50
MAX_CLASS_NAME = 200
TRAINING_WAIT = 120.0  # seconds a request waits for the training before it
TRAINING_TIMEOUT = 300.0  # seconds a training may run before it is stopped
_STATUS_OF_KIND = {"InvalidInputError": (400, "bad_request"), "NotFoundError": (404, "not_found"),
                   "ImageError": (400, "invalid_image"), "ExecutionError": (409, "index_busy")}


def _training() -> dict:
    allowed, why = write_permission()
    return {"allowed": allowed, "why": why}


def _require_training() -> dict:
    return _training()  # refused before the view runs if not allowed (web/auth.py: 401 key_required, 403)


@heads_api.get("/heads")
def list_heads():
    eng = _engine()
    heads = []
    for name in eng.head_names():
        try:
            heads.append(head_summary(eng.head(name)))
        except InvalidInputError as exc:  # trained for another backbone, say: listed, with why it cannot be used
            heads.append({"name": name, "error": str(exc)})
    return jsonify(heads=heads, damaged=sorted(eng.heads.damaged), training=_training(),
                   models=list(MODELS), default_model=DEFAULT_MODEL)


@heads_api.post("/heads")
def create_head():
    training = _require_training()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", 'the body must be a JSON object such as {"name": "style", "examples": '
                                            '{"classic": [3, 17], "modern": [5, 8]}}')
    name = body.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ApiError(400, "invalid_name", f"name must be letters, digits, '.', '_' or '-' (at most 64, starting "
                                            f"with a letter or digit), got {quote(name)}")
    model = body.get("model", DEFAULT_MODEL)
    if model not in MODELS:
        raise ApiError(400, "invalid_model", f"model must be one of {', '.join(MODELS)}, got {quote(model)}")
    weight = number_field(body.get("search_weight", 1.0), "search_weight", 0, 10, text=False)
    if "zero_shot" in body:  # a head from class names alone, by the index's text tower
        summary = _run_training(["--name", name, "--search-weight", str(float(weight)), *_zero_shot_args(body)], "")
        return jsonify(head=summary, training=training), 201, {"Location": url_for("heads_api.get_head", name=name)}
    unknown = sorted(set(body) - {"name", "model", "search_weight", "examples"})
    if unknown:
        raise ApiError(400, "invalid_field", f"unknown field {quote(unknown[0])}; a head has name, examples, model "
                                             "and search_weight")
    examples = _checked_examples(body.get("examples"))
    summary = _run_training(["--name", name, "--model", model, "--search-weight", str(float(weight)),
                             "--examples", "-"], json.dumps(examples))
    response = jsonify(head=summary, training=training)
    return response, 201, {"Location": url_for("heads_api.get_head", name=name)}


@heads_api.get("/heads/<name>")
def get_head(name: str):
    return jsonify(head=head_summary(_engine().head(name)), training=_training())


@heads_api.delete("/heads/<name>")
def delete_head(name: str):
    training = _require_training()
    eng = _engine()
    if name not in eng.head_names() and name not in eng.heads.damaged:
        raise ApiError(404, "unknown_head", f"no head named {quote(name)} (available: "
                                            f"{', '.join(eng.head_names()) or 'none'})")
    _run_training(["--name", name, "--delete"], "")
    return jsonify(deleted=name, training=training)


def _zero_shot_args(body: dict) -> list[str]:
    """The command's options for ``{"zero_shot": [class names], "scale": ..., "templates": [...]}``, checked."""
    unknown = sorted(set(body) - {"name", "search_weight", "zero_shot", "scale", "templates"})
    if unknown:
        raise ApiError(400, "invalid_field", f"unknown field {quote(unknown[0])}; a zero-shot head has name, "
                                             "zero_shot, scale, templates and search_weight")
    check_text_queries(_engine().manifest)  # 400 text_queries_unsupported: no text tower to read the names
    classes, scale, templates = body["zero_shot"], body.get("scale", "preset"), body.get("templates", [])
    if not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES or not all(
            isinstance(c, str) and c.strip() and len(c) <= MAX_CLASS_NAME for c in classes):
        raise ApiError(400, "invalid_classes", f"zero_shot must be a list of 2 to {MAX_CLASSES} class names (each "
                                               f"1 to {MAX_CLASS_NAME} characters), got {quote(classes, 60)}")
    if not (scale in ("preset", "labels") or isinstance(scale, (int, float)) and not isinstance(scale, bool)):
        raise ApiError(400, "invalid_scale", f"scale must be \"preset\", \"labels\" or a number, got {quote(scale)}")
    if not isinstance(templates, list) or len(templates) > 20 or not all(
            isinstance(t, str) and t.count("{}") == 1 and len(t) <= MAX_CLASS_NAME for t in templates):
        raise ApiError(400, "invalid_templates", "templates must be a list of at most 20 texts, each with one {} "
                                                 f"where the class name goes, got {quote(templates, 60)}")
    args = ["--zero-shot", json.dumps(classes), "--zero-shot-scale", str(scale)]
    return args + [arg for t in templates for arg in ("--template", t)]


def _checked_examples(examples) -> dict:
    """{class: [id | {"vector": [...]}]} for the command, every id known, every image embedded here."""
    if not isinstance(examples, dict):
        raise ApiError(400, "invalid_examples", 'examples must be an object of class name -> list of examples, '
                                                f'such as {{"classic": [3, 17], "modern": [5]}}, got {quote(examples, 60)}')
    if len(examples) < 2:
        raise ApiError(400, "invalid_examples", f"a head needs at least 2 classes, got {len(examples)}")
    if len(examples) > MAX_CLASSES:
        raise ApiError(400, "invalid_examples", f"a head may have at most {MAX_CLASSES} classes, got {len(examples)}")
    for cls, items in examples.items():
        if not cls.strip() or len(cls) > MAX_CLASS_NAME:
            raise ApiError(400, "invalid_class", f"class name {quote(cls)}: a non-empty name of at most "
                                                 f"{MAX_CLASS_NAME} characters")
        if not isinstance(items, list):
            raise ApiError(400, "invalid_examples", f"class {quote(cls)}: its examples must be a list, got "
                                                    f"{quote(items, 40)}")
        if not items:
            raise ApiError(400, "empty_class", f"class {quote(cls)} has no examples: give it at least one, or leave "
                                               "it out")
    total = sum(len(items) for items in examples.values())
    if total > MAX_TEACH_EXAMPLES:
        raise ApiError(413, "too_many_examples", f"at most {MAX_TEACH_EXAMPLES} examples in one request, got {total}; "
                                                 "train from a labels file (imgsearch train-head --labels) for more")
    images = sum(1 for items in examples.values() for x in items if isinstance(x, dict) and "image" in x)
    if images > MAX_TEACH_IMAGES:
        raise ApiError(413, "too_many_examples", f"at most {MAX_TEACH_IMAGES} uploaded images in one request, got "
                                                 f"{images}; index them, then teach with their ids")
    eng = _engine()
    return {cls: [_example(eng, x, f"examples[{quote(cls, 40)}][{i}]") for i, x in enumerate(items)]
            for cls, items in examples.items()}


def _example(eng, item, where: str):
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in ("id", "vector", "image"):
        kind, value = next(iter(item.items()))
    elif isinstance(item, (int, float)) and not isinstance(item, bool):
        kind, value = "id", item  # read as an id below: 3.0 is 3, 3.5 or 1e300 a 400
    else:
        raise ApiError(400, "invalid_example", f"{where}: an example is an indexed id (3 or {{\"id\": 3}}), "
                                               f"{{\"vector\": [...]}} or {{\"image\": \"<base64>\"}}, got {quote(item, 40)}")
    if kind == "id":
        try:
            value = id_field(value, text=False)
        except InvalidFieldError as exc:
            raise ApiError(400, "invalid_id", f"{where}: {exc}") from None
        try:
            eng.get(value)
        except UnknownIdError:
            raise ApiError(400, "unknown_id", f"{where}: no image with id {value} in the index") from None
        return value
    try:
        if kind == "vector":
            vector = eng.check_vector(value)
        else:
            vector = eng.embed_images([decode_image(value, where)],
                                      max_pixels=current_app.config["MAX_IMAGE_PIXELS"])[0]
    except (InvalidInputError, ImageError) as exc:
        status, code, message = error_of(exc) or (400, "bad_request", str(exc))
        raise ApiError(status, code, f"{where}: {message}") from None
    return {"vector": [float(v) for v in vector]}


_one_at_a_time = threading.Lock()


def _run_training(args: list[str], stdin: str) -> dict:
    """Run ``imgsearch train-head`` on the served folder; its JSON answer, or an ApiError for its error."""
    index_dir = str(_engine().store.root)
    command = [sys.executable, "-m", "imgsearch.web.cli", "train-head", "--index", index_dir, "--json", "--no-wait", *args]
    if not _one_at_a_time.acquire(timeout=TRAINING_WAIT):
        raise ApiError(503, "busy", f"another head has been training for over {TRAINING_WAIT:.0f} s; try again later")
    try:
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=TRAINING_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ApiError(503, "training_timeout", f"training took over {TRAINING_TIMEOUT:.0f} s and was stopped; "
                                                "the index keeps the heads it had") from None
    finally:
        _one_at_a_time.release()
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    answer = json.loads(lines[-1]) if lines else {}
    if done.returncode == 0 and "error" not in answer:
        return answer.get("head", answer)
    error = answer.get("error") or {}
    mapped = _STATUS_OF_KIND.get(error.get("kind"))
    if mapped is None:
        log.error("imgsearch train-head failed (exit %d): %s", done.returncode, done.stderr[-2000:])
        raise RuntimeError(f"imgsearch train-head exited {done.returncode}")
    if error["kind"] == "ExecutionError" and done.returncode != 75:  # not the lock: the server's problem
        log.error("imgsearch train-head failed: %s", error["message"])
        raise RuntimeError(error["message"])
    raise ApiError(*mapped, error["message"])
