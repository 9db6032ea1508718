"""Checking an index folder for damage: the manifest, shards, FAISS index and heads must agree.

* ``check_published_files(store, manifest)``: the cheap check ``SearchEngine.open``
  runs (one stat per file): every published file is there with the size the
  manifest recorded when it was published.
* ``verify_index(DIR)``: reads everything (``imgsearch verify``): sha256 of every
  published file against the manifest, every shard fully (schema, Parquet
  page checksums, finite embeddings, unique ids), counts, dimensions, the
  FAISS index's ids against the shards' and a few self-searches, the
  whitening transform and every head's search index.

Repairing (``indexer.run.repair``) is a writer's job and lives with the other runs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from imgsearch.indexer.folder.evidence import claim_problems, id_problems, read_evidence
from imgsearch.indexer.folder.manifest import search_dim
from imgsearch.indexer.folder.shard_columns import is_shard_schema
from imgsearch.indexer.folder.store import (
    COPIES_PREFIX,
    MANIFEST,
    SHARD_DIR,
    EmbeddingStore,
    IndexFormatError,
    embeddings_of,
    file_sha256,
)

log = logging.getLogger(__name__)


SELF_SEARCHES = 8  # rows whose own embedding must find them in the FAISS index
UNIT_TOLERANCE = 1e-3  # a stored embedding's length may differ from 1 by float32 rounding, never by more


REQUIRED_KEYS = {"backbone": dict, "dim": int, "count": int, "shards": list, "generation": int}


@dataclass
class Problem:
    part: str  # manifest | shard | shards | index | whitening | head | copies
    path: str  # the file concerned, relative to the index folder ("" for the shards as a whole)
    message: str
    repairable: bool  # by rebuilding from the intact shards (repair_index)


@dataclass
class VerifyReport:
    index_dir: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not damage: leftovers of interrupted runs, old formats
    images: int = 0
    shards: int = 0
    files_hashed: int = 0
    heads: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, part: str, path: str, message: str, repairable: bool = True) -> None:
        self.problems.append(Problem(part, path, message, repairable))

    def lines(self) -> list[str]:
        if self.ok:
            out = [f"OK: {self.index_dir}: {self.images} images in {self.shards} shard(s), {self.heads} head(s); "
                   f"{self.files_hashed} file(s) match their recorded sha256"]
        else:
            out = [f"DAMAGED: {self.index_dir}: {len(self.problems)} problem(s)"]
            out += [f"  {p.path or p.part}: {p.message}" for p in self.problems]
            if all(p.repairable for p in self.problems):
                out.append(f"'imgsearch verify --index {self.index_dir} --repair' rebuilds the index from the "
                           "intact shards (images of a damaged shard are dropped, and embedded again by the "
                           "next 'imgsearch index' of their folder)")
            else:
                out.append("not repairable in place: restore the folder from a backup, or index the images "
                           "again into a new folder")
        out += [f"  note: {n}" for n in self.notes]
        return out

    def to_dict(self) -> dict:
        return dict(asdict(self), ok=self.ok)

    def raise_if_damaged(self) -> None:
        if not self.ok:
            raise IndexFormatError("\n".join(self.lines()))


def check_published_files(store: EmbeddingStore, manifest: dict) -> None:
    """Raise IndexFormatError if a published file is missing or its size changed since publishing."""
    records = manifest.get("files") or {}
    for rel in store.published_files(manifest):
        path = store.root / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IndexFormatError(f"{path} is missing: the index is damaged; {_what_next(store.root)}") from None
        recorded = (records.get(rel) or {}).get("size")
        if recorded is not None and recorded != size:
            raise IndexFormatError(
                f"{path} is {size} bytes but was {recorded} when it was published: it was truncated or "
                f"overwritten, the index is damaged; {_what_next(store.root)}"
            )


def _what_next(root) -> str:
    return f"'imgsearch verify --index {root}' lists all the damage, with --repair it rebuilds what it can"


def _part_of(rel: str) -> str:
    if rel.startswith(f"{SHARD_DIR}/"):
        return "shard"
    if rel.startswith(f"{COPIES_PREFIX}-"):
        return "copies"  # repairable: repair drops the table, the next 'imgsearch index' records them again
    return "whitening" if rel.startswith("whitening-") else "index"


def index_ids(index) -> np.ndarray | None:
    """The ids a FAISS index holds, for the index types that keep them (else None)."""
    import faiss

    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return None
    lists = ivf.invlists
    parts = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
             for i in range(ivf.nlist) if lists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)


def verify_index(index_dir, *, checksums: bool = True) -> VerifyReport:
    """Check everything an index folder publishes; the report lists each problem found."""
    store = EmbeddingStore(index_dir)
    report = VerifyReport(str(index_dir))
    if not (store.root / MANIFEST).exists() and not store.shard_dir.exists():
        store.read_manifest()  # no index here at all (a mistyped --index): its error, not a damage report
    try:
        manifest = store.read_manifest()
    except IndexFormatError as exc:
        report.problem("manifest", MANIFEST, str(exc), repairable=False)
        return report
    bad = [k for k, t in REQUIRED_KEYS.items() if not isinstance(manifest.get(k), t)]
    if bad or "index_file" not in manifest:
        report.problem("manifest", MANIFEST, f"lacks or has malformed entries: {', '.join(bad or ['index_file'])}",
                       repairable=False)
        return report
    report.images, report.shards = manifest["count"], len(manifest["shards"])
    _check_files(store, manifest, report, checksums)
    claims = claim_problems(manifest, read_evidence(store, manifest["shards"]))
    for message in claims:  # not repairable: dropping shards cannot make a lying manifest true
        report.problem("manifest", MANIFEST, message, repairable=False)
    if claims:
        return report  # every shard would look damaged against a false claim
    tables = _check_shards(store, manifest, report)
    _check_faiss(store, manifest, report, tables)
    _check_whitening(store, manifest, report)
    _check_heads(store, manifest, report)
    _check_copies(store, manifest, report)
    leftovers = set(store.completed_shards()) - set(manifest["shards"]) - set(manifest.get("retired_shards", []))
    if leftovers:
        report.notes.append(f"{len(leftovers)} shard(s) not in the manifest ({', '.join(sorted(leftovers)[:3])}"
                            f"{', ...' if len(leftovers) > 3 else ''}): left by an interrupted run, never served; "
                            "the next 'imgsearch index' adopts or deletes them")
    return report


def _check_files(store: EmbeddingStore, manifest: dict, report: VerifyReport, checksums: bool) -> None:
    records = manifest.get("files")
    if records is None:
        report.notes.append("the manifest records no sizes or checksums (published by an older imgsearch): files "
                            "were checked for readability only; the next publish records them")
    for rel in store.published_files(manifest):
        path = store.root / rel
        if not path.is_file():
            report.problem(_part_of(rel), rel, "is missing", repairable=_part_of(rel) != "whitening")
            continue
        if records is None:
            continue
        record = records.get(rel)
        if record is None:
            report.problem("manifest", rel, "is published but has no size and sha256 in the manifest")
            continue
        size = path.stat().st_size
        if size != record["size"]:
            report.problem(_part_of(rel), rel, f"is {size} bytes, {record['size']} when it was published: "
                                               "truncated or overwritten", repairable=_part_of(rel) != "whitening")
        elif checksums:
            report.files_hashed += 1
            if file_sha256(path) != record["sha256"]:
                report.problem(_part_of(rel), rel, "content changed since it was published (sha256 differs "
                                                   "from the recorded one): the file is damaged",
                               repairable=_part_of(rel) != "whitening")


def _check_shards(store: EmbeddingStore, manifest: dict, report: VerifyReport) -> dict | None:
    """Read every shard; returns {name: (ids, sample embeddings)} if all are readable, else None."""
    tables, rows = {}, 0
    for name in manifest["shards"]:
        rel = f"{SHARD_DIR}/{name}"
        if not (store.shard_dir / name).is_file():
            continue  # reported as missing
        try:
            table = store.read_table([name])
        except IndexFormatError as exc:
            report.problem("shard", rel, f"cannot be read: {exc.__cause__ or exc}")
            continue
        if not is_shard_schema(table.schema, manifest["dim"]):
            report.problem("shard", rel, f"has columns {table.schema.names} with types "
                                         f"{[str(t) for t in table.schema.types]}, not the index schema "
                                         f"(dimension {manifest['dim']})")
            continue
        emb = embeddings_of(table)  # (s, D)
        if not np.isfinite(emb).all():
            report.problem("shard", rel, "holds embeddings with NaN or infinity")
            continue
        ids = table.column("id").to_numpy()
        off = np.flatnonzero(np.abs(np.linalg.norm(emb.astype(np.float64), axis=1) - 1) > UNIT_TOLERANCE)
        if len(off):
            report.problem("shard", rel, f"holds {len(off)} embedding(s) that are not unit length (ids "
                                         f"{ids[off][:5].tolist()}): a vector without a direction was stored")
            continue
        step = max(1, len(ids) // 2)
        tables[name] = (ids, ids[::step][:2], emb[::step][:2])  # a couple of rows to search for
        rows += len(ids)
    if len(tables) != len(manifest["shards"]):
        return None
    all_ids = np.concatenate([t[0] for t in tables.values()]) if tables else np.empty(0, np.int64)
    unique, counts = np.unique(all_ids, return_counts=True)
    if (counts > 1).any():
        report.problem("shards", "", f"ids {unique[counts > 1][:5].tolist()} are in more than one row", False)
        return None
    if rows != manifest["count"]:
        report.problem("shards", "", f"the manifest says {manifest['count']} images, the shards hold {rows}")
    for message in id_problems(manifest, all_ids):
        report.problem("manifest", MANIFEST, message, repairable=False)
    return tables


def _check_faiss(store: EmbeddingStore, manifest: dict, report: VerifyReport, tables: dict | None) -> None:
    import faiss

    from imgsearch.indexer.folder.whitening import search_space

    name = manifest["index_file"]
    if name is None:
        if manifest["count"]:
            report.problem("index", MANIFEST, f"names no FAISS index for {manifest['count']} images")
        return
    path = store.root / name
    if not path.is_file():
        return  # reported as missing
    try:
        lists_file = (manifest.get("ann") or {}).get("lists_file")  # an on-disk index: read through the store
        index = store.read_index(name, lists_file=lists_file) if lists_file else faiss.read_index(str(path))
    except (RuntimeError, IndexFormatError) as exc:
        report.problem("index", name, f"is not a readable FAISS index (truncated or damaged): "
                                      f"{str(exc).strip().splitlines()[-1]}")
        return
    space_dim = search_dim(manifest)
    if index.ntotal != manifest["count"] or index.d != space_dim:
        report.problem("index", name, f"holds {index.ntotal} vectors of dimension {index.d}, the manifest "
                                      f"says {manifest['count']} of dimension {space_dim}")
        return
    if tables is None:
        return  # the shards are damaged: nothing reliable to compare with
    ids = index_ids(index)
    shard_ids = np.concatenate([t[0] for t in tables.values()]) if tables else np.empty(0, np.int64)
    if ids is None:
        report.notes.append(f"{type(index).__name__} does not list its ids: ids checked by self-search only")
    elif not np.array_equal(np.sort(ids), np.sort(shard_ids)):
        extra, lacking = np.setdiff1d(ids, shard_ids), np.setdiff1d(shard_ids, ids)
        report.problem("index", name, f"ids differ from the shards': {len(extra)} not in the shards "
                                      f"{extra[:5].tolist()}, {len(lacking)} missing {lacking[:5].tolist()}")
        return
    if not tables or not index.ntotal:
        return  # an empty index: nothing to search for
    sample_ids = np.concatenate([t[1] for t in tables.values()])
    if not len(sample_ids):
        return
    pick = np.unique(np.linspace(0, len(sample_ids) - 1, SELF_SEARCHES).astype(int))  # spread over the shards
    sample_ids = sample_ids[pick]
    sample = np.concatenate([t[2] for t in tables.values()])[pick]  # (m, D)
    try:
        queries = search_space(sample, store.root, manifest)  # (m, d)
    except Exception:  # noqa: BLE001 - a missing or damaged whitening file is reported by its own check
        return
    _, found = index.search(np.ascontiguousarray(queries, np.float32), min(10, index.ntotal))  # (m, k)
    lost = [int(i) for i, row in zip(sample_ids, found) if i not in row]
    if len(lost) > len(sample_ids) // 4:  # approximate index types may miss one; a wrong index misses most
        report.problem("index", name, f"searching for the stored embeddings of ids {lost} does not find them: "
                                      "its vectors do not match the shards")


def _check_whitening(store: EmbeddingStore, manifest: dict, report: VerifyReport) -> None:
    from imgsearch.indexer.folder.whitening import Whitening

    info = manifest.get("whitening")
    if not info or not (store.root / info["file"]).is_file():
        return
    try:
        w = Whitening.load(store.root / info["file"])
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds on a damaged .npz
        report.problem("whitening", info["file"], f"cannot be read: {exc}; run 'imgsearch whiten' again", False)
        return
    space_dim = search_dim(manifest)
    if w.mean.shape != (manifest["dim"],) or w.projection.shape != (manifest["dim"], space_dim):
        report.problem("whitening", info["file"], f"maps {w.projection.shape}, the index needs "
                                                  f"({manifest['dim']}, {space_dim}); run 'imgsearch whiten' again",
                       False)


def _check_copies(store: EmbeddingStore, manifest: dict, report: VerifyReport) -> None:
    from imgsearch.indexer.folder.copies import read_copies

    info = manifest.get("copies")
    if not info or not (store.root / info["file"]).is_file():
        return  # none recorded, or reported as missing
    try:
        read_copies(store.root, manifest)
    except IndexFormatError as exc:
        report.problem("copies", info["file"], f"cannot be read: {exc}")


def _check_heads(store: EmbeddingStore, manifest: dict, report: VerifyReport) -> None:
    import faiss

    from imgsearch.indexer.folder.heads import HeadError, head_index_path, list_heads, load_head

    space_dim = search_dim(manifest)
    for name in list_heads(store.root):
        report.heads += 1
        try:
            head = load_head(store.root, name, manifest)
        except (HeadError, OSError, ValueError, KeyError) as exc:
            report.problem("head", f"heads/{name}", f"cannot be loaded: {exc}; retrain it with "
                                                    f"'imgsearch train-head --name {name}'", False)
            continue
        if manifest["index_file"] is None:
            continue
        path = head_index_path(store.root, name, manifest)
        rel = str(path.relative_to(store.root))
        if not path.is_file():
            report.problem("head", rel, "is missing: head-aware search with this head fails")
            continue
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            report.problem("head", rel, f"is not a readable FAISS index: {str(exc).strip().splitlines()[-1]}")
            continue
        want = space_dim + len(head.classes)
        if index.ntotal != manifest["count"] or index.d != want:
            report.problem("head", rel, f"holds {index.ntotal} vectors of dimension {index.d}, the head "
                                        f"needs {manifest['count']} of dimension {want}")
