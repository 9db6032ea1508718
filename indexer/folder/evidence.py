"""A manifest's claims checked against the evidence its data carries, so a manifest that lies (an edit,
another program, a copy from another folder) is refused in words, never believed.

The evidence, read from the Parquet footers only (no row is read):

* every shard's vector length (its ``embedding`` column's fixed size) is the dimension;
* shards written since format 4's fingerprint carry the embedder that made them in their key-value metadata
  (``EMBEDDER_KEY``: backbone, precision, dimension), written with each shard by the store;
* the ids they hold are all below ``next_id`` (else ids would be given twice);
* without whitening, the search dimension is the embedding dimension.

Shards of older releases carry no fingerprint: their vector length is their evidence.  (The image count
against the shards' rows is checked where the rows are read: opening, ``verify``.)  ``claim_problems``
lists every disagreement, each naming both values; ``check_claims`` raises them as one
``ManifestClaimError`` (opening), ``verify`` reports them (not repairable: dropping shards cannot make a
lying manifest true).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from imgsearch.indexer.folder.manifest import backbone_name, precision
from imgsearch.indexer.folder.shard_columns import EMBEDDER_KEY
from imgsearch.indexer.folder.store import IndexFormatError

class ManifestClaimError(IndexFormatError):
    """The manifest claims what its shards or FAISS index contradict; the message names both values."""


def embedder_fingerprint(manifest: dict) -> dict:
    """What a shard records of the model that made its embeddings."""
    return {"backbone": backbone_name(manifest), "precision": precision(manifest), "dim": int(manifest["dim"])}


@dataclass(frozen=True)
class ShardEvidence:
    rows: int
    dim: int | None  # the embedding column's fixed length (None: not a fixed-size list)
    fingerprint: dict | None  # the embedder it records, if it records one


def shard_evidence(path) -> ShardEvidence:
    """What one shard's footer says (OSError or ArrowException if it cannot be read)."""
    meta = pq.read_metadata(path)
    schema = meta.schema.to_arrow_schema()
    kind = schema.field("embedding").type if "embedding" in schema.names else None
    dim = kind.list_size if kind is not None and pa.types.is_fixed_size_list(kind) else None
    raw = (meta.metadata or {}).get(EMBEDDER_KEY)
    try:
        fingerprint = json.loads(raw) if raw else None
    except ValueError:
        fingerprint = {"damaged": raw[:80].decode("utf-8", "replace")}
    return ShardEvidence(meta.num_rows, dim, fingerprint if isinstance(fingerprint, dict) else None)


def claim_problems(manifest: dict, evidence: dict[str, ShardEvidence]) -> list[str]:
    """Each claim of ``manifest`` that the shards' ``evidence`` ({name: ShardEvidence}) contradicts."""
    problems = []
    dims = {name: e.dim for name, e in evidence.items() if e.dim is not None}
    if dims and len(set(dims.values())) == 1 and manifest["dim"] not in dims.values():
        problems.append(f"the manifest says dimension {manifest['dim']}, but every shard holds vectors of "
                        f"{next(iter(dims.values()))} numbers")
    else:
        problems += [f"the manifest says dimension {manifest['dim']}, but shard {name} holds vectors of {d} numbers"
                     for name, d in dims.items() if d != manifest["dim"]]
    claimed = embedder_fingerprint(manifest)
    for key, value in claimed.items():
        if key == "dim" and problems:
            continue  # said once, from the vectors themselves
        made = {name: e.fingerprint[key] for name, e in evidence.items()
                if e.fingerprint is not None and key in e.fingerprint and e.fingerprint[key] != value}
        if made:
            name, theirs = next(iter(made.items()))
            problems.append(f"the manifest says {key} {value!r}, but {len(made)} shard(s) (first: {name}) were "
                            f"made with {key} {theirs!r}")
    whitening = manifest.get("whitening")
    space = whitening["dim"] if whitening else manifest["dim"]
    if manifest.get("search_dim", space) != space and not problems:  # (a wrong dimension says it already)
        problems.append(f"the manifest says search dimension {manifest['search_dim']}, but "
                        + (f"its whitening maps to {space}" if whitening else f"it has no whitening "
                                                                             f"(dimension {space})"))
    return problems


def id_problems(manifest: dict, ids: np.ndarray) -> list[str]:
    """The manifest's ``next_id`` against the ids the shards hold: every id must be below it."""
    next_id = manifest.get("next_id")
    if next_id is not None and len(ids) and int(ids.max()) >= next_id:
        return [f"the manifest says the next id is {next_id}, but the shards hold id {int(ids.max())}: "
                "ids would be given twice"]
    return []


def read_evidence(store, names) -> dict[str, ShardEvidence]:
    """The evidence of the shards ``names`` that can be read (a damaged one is reported by its own check)."""
    found = {}
    for name in names:
        try:
            found[name] = shard_evidence(store.shard_dir / name)
        except (OSError, pa.ArrowException):
            continue
    return found


def check_claims(store, manifest: dict, ids: np.ndarray | None = None) -> None:
    """Raise ManifestClaimError if the shards contradict what the manifest claims."""
    problems = claim_problems(manifest, read_evidence(store, manifest["shards"]))
    problems += id_problems(manifest, ids) if ids is not None else []
    if problems:
        raise ManifestClaimError(
            f"{store.root}: the manifest does not match the data: " + "; ".join(problems) + ". The manifest was "
            "edited or replaced: restore it from a backup, or index the images again into a new folder")
