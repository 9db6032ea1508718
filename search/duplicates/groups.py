"""Near-duplicate groups of a whole index: the same picture resized, re-encoded, cropped or edited.

``find_duplicates(engine, threshold, keep)`` (``SearchEngine.duplicates``,
``imgsearch duplicates``, ``GET /api/duplicates``):

1. every pair of images scoring at least ``threshold`` (cosine similarity in the space the index searches),
   from the index itself: exact block-wise inner products for an exact index, batched k-NN searches of the
   ANN index otherwise (``search/duplicates/pairs.py``); memory grows with the pairs found, never n x n;
2. connected components of those pairs;
3. the guard against chaining: A~B and B~C must not glue A and C when they
   are different photos.  In each component the keeper is chosen (``keep``)
   and only members scoring at least ``threshold`` against the keeper stay in
   its group; those that fail are grouped again among themselves (their own
   components, their own keeper, the same rule), so nothing is silently lost.
   A component whose pairs all passed (a clique) needs nothing more; for the
   others the members' vectors are fetched (``FETCH_BUDGET`` bytes at a time)
   and scored exactly against each keeper.
4. with ``keypoints`` (the default of every surface), pairs from KEYPOINT_FLOOR
   up are judged by the verifier (``search/duplicates/verifier.py`` over
   ``keypoints.py``, ``judge.py``): a match makes a pair below the threshold a
   duplicate (the threshold is the first stage's cosine gate; the member's
   evidence says which check promoted it), a mismatch refutes one above it
   (above KEYPOINT_SURE, only a fitted transform's); a member the keeper's
   check leaves out joins through a member that matches it clearly
   (``judge.vouched``; its evidence's ``via``).

The keeper (``KEEP_RULES``): ``largest`` (default) the most pixels (width x
height as indexed), then the largest file, then the lowest id; ``smallest``
the reverse (fewest pixels, smallest file, lowest id); ``oldest`` / ``newest``
the image indexed first / last, i.e. the lowest / highest id (ids are handed
out in indexing order and never reused; the shards record no file times, so
a re-embedded changed file keeps its place).

Exact copies (files with the same sha256 as an indexed image, which indexing
does not embed twice, ``indexer/folder/copies.py``) are groups of their own,
``exact=True``: the indexed id once per file, every file's path, scores 1.0.

Groups are numbered from 1 in order of their keeper's id (exact copies after); members keeper first, then
by score, best first.  Pairs marked "not a duplicate" (``marks.py``) are never in one group.

After an incremental ``imgsearch index`` the groups are computed again for the new version (new images can
join or bridge old groups, removed ones split them); figures: docs/benchmarks.md (scripts/bench_duplicates_*.py).
Servers cache the result per version, threshold, keeper rule and marks: a new version is a new engine.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from imgsearch.indexer.errors import InvalidInputError, quote
from imgsearch.indexer.folder.copies import read_copies
from imgsearch.indexer.numbers import number_field
from imgsearch.search.duplicates.judge import KEYPOINT_FLOOR, Judge, confirmed, vouched
from imgsearch.search.duplicates.marks import Marks
from imgsearch.search.duplicates.pairs import IndexVectors, Pairs
from imgsearch.search.duplicates.progress import DuplicatesProgress
from imgsearch.search.duplicates.sizes import StoredSizes

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.90  # cosine; scripts/bench_duplicates.py: with keypoints the most recall at pair precision >= 0.98
KEEP_RULES = ("largest", "smallest", "oldest", "newest")
FETCH_BUDGET = 256 * 2**20  # bytes of vectors held at once for the anti-chaining check


@dataclass(frozen=True)
class DuplicateGroup:
    group: int  # numbered from 1, in order of ``keep``
    ids: list[int]  # the keeper first; for exact copies the one indexed id, once per file
    paths: list[str]  # as stored (``display_text`` shows any bytes)
    scores: list[float]  # scores[i]: member i against the keeper
    keep: int  # the keeper's id
    exact: bool  # exact copies (same sha256) rather than near-duplicates
    # evidence[i]: why member i is in the group: its cosine, ``decided_by`` ("keeper", "cosine": it scores
    # at least the threshold, "keypoints" / "dense": that check promoted it from below the threshold,
    # "sha256": an exact copy) and, when the verifier ran, its numbers (search/duplicates/verifier.py)
    evidence: list[dict] = field(default_factory=list)
    sizes: list[dict] = field(default_factory=list)  # sizes[i]: member i's width, height, file_size as stored

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DuplicateReport:
    groups: list[DuplicateGroup]
    threshold: float
    keep: str
    generation: int  # the index version they were found in
    images: int
    method: str  # "exact" or "ann:<index type>"
    pairs: int  # pairs scoring >= threshold (or confirmed by keypoints) before the anti-chaining check
    seconds: float
    keypoints: bool = False  # whether pairs below the threshold were checked for matching keypoints
    confirmed: int = 0  # pairs below the threshold whose keypoints matched
    refuted: int = 0  # pairs at or above the threshold whose keypoints did not match
    marked: int = 0  # pairs marked "not a duplicate" (search/duplicates/marks.py) among the indexed images

    def __len__(self) -> int:
        return len(self.groups)

    def __iter__(self):
        return iter(self.groups)

    def to_dict(self) -> dict:
        return dict(asdict(self), groups=[g.to_dict() for g in self.groups])


def check_options(threshold, keep) -> tuple[float, str]:
    """(threshold, keep) as given, None meaning the default; InvalidInputError saying what to change."""
    if threshold is None:
        threshold = DEFAULT_THRESHOLD
    threshold = number_field(threshold, "threshold", 0, 1, f" (a cosine score; default {DEFAULT_THRESHOLD})",
                             text=False, above_low=True)  # the one strict parser: 10**400 is this error too
    keep = "largest" if keep is None else keep
    if keep not in KEEP_RULES:
        raise InvalidInputError(f"keep must be one of {', '.join(KEEP_RULES)}, got {quote(keep)}")
    return float(threshold), keep


def find_duplicates(engine, threshold: float | None = None, keep: str | None = None,
                    keypoints: bool = False, matcher=None, progress: DuplicatesProgress | None = None) -> DuplicateReport:
    """Every near-duplicate group (and group of exact copies) of the version ``engine`` answers from.

    ``keypoints``: a pair scoring below ``threshold`` (down to KEYPOINT_FLOOR) is a near-duplicate too
    when the two files' keypoints match under one transform (``search/duplicates/keypoints.py``): crops, rotations
    and stickers are found without grouping look-alikes.  Reads the files of the candidates, once per
    ``matcher`` (a ``keypoints.KeypointMatcher`` of this engine; None: a new one).  ``progress``: reported by
    stage and obeyed when cancelled (``search/duplicates/progress.py``; None: bars on a terminal).
    """
    started = time.perf_counter()
    threshold, keep = check_options(threshold, keep)
    progress = progress or DuplicatesProgress()
    try:
        return _find(engine, threshold, keep, keypoints, matcher, progress, started)
    finally:
        progress.close()


def _find(engine, threshold: float, keep: str, keypoints: bool, matcher, progress, started: float):
    if not keypoints:
        return _found(engine, threshold, keep, None, progress, started)
    from imgsearch.search.duplicates.keypoints import KeypointMatcher

    matcher = matcher or KeypointMatcher(engine)
    with matcher.running():  # the verifying processes, started once, judge every stage's pairs
        return _found(engine, threshold, keep, Judge(matcher, threshold), progress, started)


def _found(engine, threshold: float, keep: str, judge: Judge | None, progress, started: float):
    vectors = IndexVectors(engine)
    keypoints = judge is not None
    if keypoints:
        candidates = vectors.pairs(min(threshold, KEYPOINT_FLOOR), progress)
        pairs = confirmed(candidates, threshold, judge, progress)
    else:
        pairs = vectors.pairs(threshold, progress)
    marks = Marks(engine)  # pairs marked "not a duplicate": never in one group
    near = _near_groups(marks.drop(pairs), vectors, _Priority(engine, keep), threshold, judge, progress, marks)
    exact = _exact_groups(engine)
    found = sorted([(g[0][0], 0, g) for g in near] + [(g[0][0], 1, g) for g in exact], key=lambda x: x[:2])
    groups, sizes = [], StoredSizes(engine)
    if judge is not None:  # each member against its keeper, as its evidence asks: judged at once, in the workers
        judge.matcher.prepare([(int(ids[0]), int(m)) for _, is_exact, (ids, _, _, vias) in found if not is_exact
                               for m, via in zip(ids[1:], vias[1:]) if int(via) == int(ids[0])], ordered=True)
    for number, (keeper, is_exact, (ids, paths, scores, vias)) in enumerate(found, 1):
        scores = [round(float(s), 6) for s in scores]
        groups.append(DuplicateGroup(number, [int(i) for i in ids], paths, scores, int(keeper), bool(is_exact),
                                     _evidence(ids, vias, scores, threshold, judge, bool(is_exact)), sizes.of(ids)))
    report = DuplicateReport(groups, threshold, keep, engine.generation, len(engine), vectors.method, len(pairs),
                             round(time.perf_counter() - started, 3), keypoints,
                             sum(judge.verdicts.values()) if judge else 0,
                             sum(not v for v in judge.verdicts.values()) if judge else 0, len(marks))
    log.info("%d duplicate groups among %d images (%d pairs >= %.3f, %s) in %.1f s", len(groups), len(engine),
             len(pairs), threshold, vectors.method, report.seconds)
    return report


def _evidence(ids, vias, scores: list[float], threshold: float, judge, exact: bool) -> list[dict]:
    """Each member's evidence against the member that vouched for it (``vias``, the keeper ids[0] unless
    the keeper's own check left it out): see ``DuplicateGroup.evidence``."""
    out = [{"cosine": 1.0, "decided_by": "keeper", "via": None}]
    for row_id, via, score in zip(ids[1:], vias[1:], scores[1:]):
        via = int(via)
        if exact:
            out.append({"cosine": 1.0, "decided_by": "sha256", "via": via})
        elif judge is None:
            out.append({"cosine": score, "decided_by": "cosine", "via": via})
        elif via == int(ids[0]):
            out.append({**judge.matcher.member_evidence(via, int(row_id), score, threshold), "via": via})
        else:  # in through another member, whose check matched it: that check decided, whatever the cosine
            found = judge.matcher.evidence(via, int(row_id))
            if not found.match:  # the pair was judged the other way round
                found = judge.matcher.evidence(min(via, int(row_id)), max(via, int(row_id)))
            out.append({"cosine": score, "decided_by": found.check, **found.to_dict(), "via": via})
    return out


class _Priority:
    """Ranks images for the keeper rule: lower rank = kept."""

    def __init__(self, engine, keep: str):
        self.engine, self.keep = engine, keep
        self._sizes = None

    def ranks(self, ids: np.ndarray) -> np.ndarray:
        """(m,) rank of each of ``ids`` (m,) among them."""
        if self.keep in ("oldest", "newest"):
            keys = (ids if self.keep == "oldest" else -ids,)
        else:
            pixels = self._pixels(ids)
            size = np.array([_file_size(h.path) for h in self.engine.get_many(ids)], np.float64)  # -1: unknown
            if self.keep == "largest":
                keys = (ids, -size, -pixels)
            else:  # an unknown size is never the smallest
                keys = (ids, np.where(size < 0, np.inf, size), pixels)
        order = np.lexsort(keys)
        ranks = np.empty(len(ids), np.int64)
        ranks[order] = np.arange(len(ids))
        return ranks

    def _pixels(self, ids: np.ndarray) -> np.ndarray:
        if self._sizes is None:  # (n,) in the engine's row order, which is the shards' order
            table = self.engine.store.read_table(self.engine.manifest["shards"], ["width", "height"])
            self._sizes = table.column("width").to_numpy().astype(np.int64) * table.column("height").to_numpy()
        return self._sizes[self.engine.catalog.rows(ids)].astype(np.float64)


def _file_size(path: str) -> float:
    try:
        return float(os.stat(path).st_size)
    except (OSError, ValueError):  # gone, unreadable, or a URI: unknown
        return -1.0


def _components(a: np.ndarray, b: np.ndarray, m: int) -> np.ndarray:
    """Component label (m,) of m nodes joined by edges a-b (node indices)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(m, m))
    return connected_components(graph, directed=False)[1]


def _near_groups(pairs: Pairs, vectors: IndexVectors, priority: _Priority, threshold: float,
                 judge: Judge | None, progress: DuplicatesProgress, marks: Marks | None = None) -> list:
    """[(ids, paths, scores)] of the near-duplicate groups, keeper first."""
    if not len(pairs):
        progress.start("grouping", 0)
        return []
    nodes = np.unique(np.concatenate([pairs.a, pairs.b]))  # ids in a pair, sorted
    a, b = np.searchsorted(nodes, pairs.a), np.searchsorted(nodes, pairs.b)  # node indices, a < b
    labels = _components(a, b, len(nodes))
    sizes = np.bincount(labels)
    edges = np.bincount(labels[a], minlength=len(sizes))
    by_label = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    edge_order = np.argsort(labels[a], kind="stable")
    edge_starts = np.concatenate([[0], np.cumsum(edges)])
    groups, pending, pending_rows = [], [], 0
    budget_rows = max(2, FETCH_BUDGET // (4 * (vectors.engine.index.d)))
    progress.start("grouping", len(sizes))
    for label in range(len(sizes)):
        progress.advance()
        members = by_label[starts[label]:starts[label + 1]]
        comp_edges = edge_order[edge_starts[label]:edge_starts[label + 1]]
        ids = nodes[members]
        if judge is None and edges[label] == len(members) * (len(members) - 1) // 2:  # a clique passes any keeper
            keeper = ids[np.argmin(priority.ranks(ids))]
            scores = np.ones(len(ids), np.float32)
            at_keeper = (pairs.a[comp_edges] == keeper) | (pairs.b[comp_edges] == keeper)
            partner = np.where(pairs.a[comp_edges] == keeper, pairs.b[comp_edges], pairs.a[comp_edges])
            scores[np.searchsorted(ids, partner[at_keeper])] = pairs.score[comp_edges][at_keeper]
            groups.append(_ordered(ids, scores, keeper, vectors.engine, np.full(len(ids), keeper)))
            continue
        pending.append((ids, comp_edges))
        pending_rows += len(ids)
        if pending_rows >= budget_rows:
            groups += _split_components(pending, pairs, vectors, priority, threshold, judge, progress, marks)
            pending, pending_rows = [], 0
    groups += _split_components(pending, pairs, vectors, priority, threshold, judge, progress, marks)
    return groups


def _split_components(components: list, pairs: Pairs, vectors: IndexVectors, priority: _Priority,
                      threshold: float, judge: Judge | None, progress: DuplicatesProgress,
                      marks: Marks | None = None) -> list:
    """The groups of components that are not cliques: each member scored exactly against its keeper,
    passing when it scores >= threshold, unless the keypoints (``judge``) say otherwise or it is marked.
    Members left out are regrouped among themselves (their own components, their own keeper) in the next
    round; each round's keeper checks are judged at once (``_prepare_keepers``)."""
    if not components:
        return []
    all_ids = np.concatenate([ids for ids, _ in components])
    fetched = vectors.fetch(all_ids)  # (m, d)
    ends = np.cumsum([len(ids) for ids, _ in components])
    found = []  # (ids, local vectors, edge ends in ids' positions, edge scores) of each component
    for (ids, comp_edges), end in zip(components, ends):
        found.append((ids, fetched[end - len(ids):end], np.searchsorted(ids, pairs.a[comp_edges]),
                      np.searchsorted(ids, pairs.b[comp_edges]), pairs.score[comp_edges]))
    groups = []
    parts = [(c, np.arange(len(ids))) for c, (ids, *_) in enumerate(found)]
    while parts:
        parts = [(c, part) for c, part in parts if len(part) >= 2]
        keepers = [part[np.argmin(priority.ranks(found[c][0][part]))] for c, part in parts]
        if judge is not None:
            _prepare_keepers(found, parts, keepers, judge)
        later = []
        for (c, part), keeper in zip(parts, keepers):
            progress.check()  # the keeper check judges pairs too: a cancel is obeyed between them
            ids, local, ea, eb, edge_scores = found[c]
            scores = local[part] @ local[keeper]  # (p,)
            scores[part == keeper] = 1.0
            passed = scores >= threshold
            if judge is not None:
                k = int(ids[keeper])
                said = [None if int(i) == k else judge(k, int(i), float(s)) for i, s in zip(ids[part], scores)]
                passed = np.array([p if v is None else v for p, v in zip(passed, said)])
            passed = marks.separate(ids[part], ids[keeper], scores, passed) if marks else passed
            passed[part == keeper] = True  # the keeper is in its own group, whatever is said of it (were it
            # left out, its part would come back unchanged in every later round)
            via = np.full(len(part), keeper)  # positions into ids: who vouched for each member
            if judge is not None:  # members the keeper's check left out: through a verified member instead
                vouched(judge, ids, part, passed, via, (ea, eb, edge_scores), marks)
            if passed.sum() >= 2:
                groups.append(_ordered(ids[part[passed]], scores[passed], ids[keeper], vectors.engine,
                                       ids[via[passed]]))
            rest = part[~passed]
            if len(rest) >= 2:  # regrouped among themselves: their own components, then the same rule
                inside = np.isin(ea, rest) & np.isin(eb, rest)
                if inside.any():
                    sub = _components(np.searchsorted(rest, ea[inside]), np.searchsorted(rest, eb[inside]),
                                      len(rest))
                    later += [(c, rest[sub == s]) for s in np.unique(sub)]
        parts = later
    return groups


def _prepare_keepers(found: list, parts: list, keepers: list, judge: Judge) -> None:
    """Each part's members against its keeper, the pairs the keeper check asks the verifier about (those
    scoring KEYPOINT_FLOOR or more), judged at once rather than one by one."""
    asked = []
    for (c, part), keeper in zip(parts, keepers):
        ids, local = found[c][:2]
        scores = local[part] @ local[keeper]
        asked += [(int(ids[keeper]), int(i)) for i in ids[part[(scores >= KEYPOINT_FLOOR) & (part != keeper)]]]
    judge.matcher.prepare(asked)


def _ordered(ids: np.ndarray, scores: np.ndarray, keeper: int, engine, vias: np.ndarray) -> tuple:
    """(ids, paths, scores, vias) with the keeper first, then by score (best first), then by id."""
    is_keeper = ids == keeper
    order = np.lexsort((ids, -scores, ~is_keeper))
    ids, scores = ids[order], scores[order]
    return ids, [h.path for h in engine.get_many(ids)], np.asarray(scores, np.float64), vias[order]


def _exact_groups(engine) -> list:
    """[(ids, paths, scores)] for every indexed image with exact copies recorded."""
    copies = read_copies(engine.store.root, engine.manifest)
    if not copies.by_path:
        return []
    table = engine.store.read_table(engine.manifest["shards"], ["id", "sha256"])
    holds = dict(zip(table.column("id").to_pylist(), table.column("sha256").to_pylist()))
    copies.keep_only(holds)  # a copy of an image removed or changed since is not one any more
    by_id: dict[int, list[str]] = {}
    for path, (row_id, _) in copies.by_path.items():
        by_id.setdefault(row_id, []).append(path)
    groups = []
    for row_id in sorted(by_id):
        paths = [engine.get(row_id).path] + sorted(by_id[row_id])
        ids = np.full(len(paths), row_id, np.int64)
        groups.append((ids, paths, np.ones(len(paths)), ids))
    return groups
