"""Reviewing duplicate groups over HTTP: marks of "not a duplicate", and removing a group's other members.

- ``GET /api/duplicates/marks``: every mark, with the ids holding its two images now.
- ``POST /api/duplicates/marks`` ``{"ids": [3, 17]}``: every pair among the ids is marked (a pair, or a
  whole group); ``DELETE /api/duplicates/marks`` with the same body unmarks them.
- ``POST /api/duplicates/remove`` ``{"keep": 3, "remove": [17, 40]}``: the ids in ``remove`` leave the
  index (their files stay on disk); the served engine opens the new version before answering.

They write the index folder, and web never writes it itself (search only reads): as ``heads_api`` trains
heads, the server runs the commands a person would, ``imgsearch not-duplicates --json --no-wait`` and
``imgsearch remove --no-wait``, which hold the writer lock (another writer at work: 409 ``index_busy``).
Who may write: web/auth.py (a write key off loopback or with ``--require-key``; a read key gets 403).
Ids are checked here, once, against the version served: 400 with what to change.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

from flask import Blueprint, current_app, jsonify, request

from imgsearch.search.duplicates.marks import MAX_MARK_IDS, MAX_REMOVE, Marks
from imgsearch.search.errors import InvalidFieldError, UnknownIdError, quote
from imgsearch.search.query.numbers import id_field
from imgsearch.search.reloading import ReloadingEngine
from imgsearch.web.api import engine as _engine
from imgsearch.web.auth import write_permission
from imgsearch.web.errors import ApiError

log = logging.getLogger(__name__)

review_api = Blueprint("review_api", __name__, url_prefix="/api/duplicates")

COMMAND_WAIT = 60.0  # seconds a request waits for another review command of this server
COMMAND_TIMEOUT = 300.0  # seconds a command may run
BUSY = 75  # the commands' exit status when another command holds the writer lock
_one_at_a_time = threading.Lock()


def _writing() -> dict:
    allowed, why = write_permission()
    return {"allowed": allowed, "why": why}


@review_api.get("/marks")
def list_marks():
    marks = Marks(_engine()).listing()
    return jsonify(marks=marks, total=len(marks), writing=_writing())


@review_api.post("/marks")
def mark():
    ids = _ids(_body(), "ids", MAX_MARK_IDS, "a mark needs two different ids (a pair, or every member of a group)",
               at_least=2)
    answer = _run_json(["not-duplicates", "--json", *map(str, ids)])
    return jsonify(ids=ids, **answer)


@review_api.delete("/marks")
def unmark():
    ids = _ids(_body(), "ids", MAX_MARK_IDS, "unmarking needs two different ids", at_least=2, indexed=False)
    answer = _run_json(["not-duplicates", "--unmark", "--json", *map(str, ids)])
    return jsonify(ids=ids, **answer)


@review_api.post("/remove")
def remove():
    body = _body('{"keep": 3, "remove": [17, 40]}')
    unknown = sorted(set(body) - {"keep", "remove"})
    if unknown:
        raise ApiError(400, "invalid_field", f"unknown field {quote(unknown[0])}; give keep (the id kept) and "
                                             "remove (the ids to remove from the index)")
    keep = _ids({"keep": [body.get("keep")]}, "keep", 1, "keep is the id of the group's kept image")[0]
    others = _ids(body, "remove", MAX_REMOVE, "remove lists the ids to remove from the index", at_least=1)
    if keep in others:
        raise ApiError(400, "keeper_removed", f"id {keep} is the one kept: it cannot be in remove too")
    done = _run(["remove", *map(str, others)])
    if done.returncode != 0:
        _raise_failure(done, "remove")
    served = current_app.extensions["imgsearch"]
    eng = served.reload() if isinstance(served, ReloadingEngine) else _engine()
    return jsonify(removed=others, keep=keep, count=len(eng), generation=eng.generation)


def _body(example: str = '{"ids": [3, 17]}') -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", f"the body must be a JSON object such as {example}")
    return body


def _ids(body: dict, field: str, most: int, what: str, *, at_least: int = 1, indexed: bool = True) -> list[int]:
    """``body[field]``: a list of distinct ids, each indexed in the version served (``indexed``)."""
    raw = body.get(field)
    if not isinstance(raw, list):
        raise ApiError(400, "invalid_ids", f"{field} must be a list of ids, got {quote(raw, 60)}: {what}")
    if len(raw) > most:
        raise ApiError(400, "too_many_ids", f"at most {most} ids in {field}, got {len(raw)}")
    try:
        ids = list(dict.fromkeys(id_field(i, field, text=False) for i in raw))
    except InvalidFieldError as exc:
        raise ApiError(400, "invalid_id", str(exc)) from None
    if len(ids) < at_least:
        raise ApiError(400, "invalid_ids", f"{what}; got {len(ids)} distinct: {ids}")
    if indexed:
        eng = _engine()
        for i in ids:
            try:
                eng.get(i)
            except UnknownIdError:
                raise ApiError(400, "unknown_id", f"{field}: no image with id {i} in the index (version "
                                                  f"{eng.generation}); reload the groups") from None
    return ids


def _run(args: list[str]) -> subprocess.CompletedProcess:
    """``imgsearch ARGS --index <the served folder> --no-wait``, one at a time."""
    command = [sys.executable, "-m", "imgsearch.web.cli", *args[:1], "--index", str(_engine().store.root),
               "--no-wait", *args[1:]]
    if not _one_at_a_time.acquire(timeout=COMMAND_WAIT):
        raise ApiError(503, "busy", f"another review command has run for over {COMMAND_WAIT:.0f} s; try again later")
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ApiError(503, "timeout", f"imgsearch {args[0]} took over {COMMAND_TIMEOUT:.0f} s and was stopped") from None
    finally:
        _one_at_a_time.release()


def _run_json(args: list[str]) -> dict:
    done = _run(args)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    answer = json.loads(lines[-1]) if lines else {}
    if done.returncode == 0 and "error" not in answer:
        return answer
    error = answer.get("error") or {}
    if error.get("kind") in ("InvalidInputError", "NotFoundError"):  # the ids changed since they were checked
        raise ApiError(400, "invalid_ids", error["message"])
    _raise_failure(done, args[0])


def _raise_failure(done: subprocess.CompletedProcess, name: str):
    if done.returncode == BUSY:
        raise ApiError(409, "index_busy", "another command is writing the index; try again when it is done")
    log.error("imgsearch %s failed (exit %d): %s %s", name, done.returncode, done.stdout[-1000:], done.stderr[-2000:])
    raise RuntimeError(f"imgsearch {name} exited {done.returncode}")
