"""A manifest's claims are checked against the shards' own evidence (issue 30, item 1).

Shards carry the embedding dimension (their vector column's length) and, since this release, the
fingerprint of the embedder that made them (backbone, precision, dimension) in their Parquet key-value
metadata.  A manifest claim they contradict is refused on open and reported by ``verify`` naming both
values, as damage ``--repair`` cannot fix: it never drops the shards to make the lie true.  ``--repair``
never publishes fewer images than it found unless ``--allow-drop``.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.evidence import ManifestClaimError, shard_evidence
from imgsearch.indexer.folder.store import EmbeddingStore, IndexFormatError
from imgsearch.indexer.folder.verify import verify_index
from imgsearch.indexer.run.index_vectors import index_vectors
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.indexer.run.repair import repair_index
from imgsearch.search.engine import SearchEngine
from imgsearch.web.cli import main
from tests.helpers import rng_image
from tests.pixel_model import DIM as PIXEL_DIM
from tests.pixel_model import NAME

DIM = 16


def _vectors_index(tmp_path, n: int = 30):
    v = np.random.default_rng(0).normal(size=(n, DIM))
    pq.write_table(pa.table({"path": [f"/x/{i}.jpg" for i in range(n)], "embedding": [list(r) for r in v]}),
                   tmp_path / "v.parquet")
    index_vectors(tmp_path / "v.parquet", tmp_path / "idx", IndexConfig(progress=False, shard_size=10), model="m")
    return tmp_path / "idx"


def _lie(index_dir, **changes) -> dict:
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        target = manifest
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    path.write_text(json.dumps(manifest))
    return manifest


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_shards_record_the_embedder_that_made_them(tmp_path):
    index_dir = _vectors_index(tmp_path)
    store = EmbeddingStore(index_dir)
    for name in store.read_manifest()["shards"]:
        e = shard_evidence(store.shard_dir / name)
        assert e.dim == DIM and e.fingerprint == {"backbone": "external:m", "precision": "float32", "dim": DIM}


LIES = [
    ({"dim": 99}, "dimension 99, but every shard holds vectors of 16 numbers"),
    ({"dim": 15}, "dimension 15, but every shard holds vectors of 16 numbers"),
    ({"dim": 1}, "dimension 1, but every shard holds vectors of 16 numbers"),
    ({"backbone.name": "efficientnet-lite0"}, "backbone 'efficientnet-lite0', but 3 shard(s)"),
    ({"backbone.precision": "int8"}, "precision 'int8', but 3 shard(s)"),
    ({"search_dim": 8}, "search dimension 8, but it has no whitening (dimension 16)"),
    ({"next_id": 5}, "the next id is 5, but the shards hold id 29"),
]


@pytest.mark.parametrize("changes, message", LIES, ids=[next(iter(c)) + str(next(iter(c.values()))) for c, _ in LIES])
def test_a_manifest_claim_the_shards_contradict_is_refused_and_never_repaired_away(tmp_path, changes, message):
    index_dir = _vectors_index(tmp_path)
    shards = sorted(p.name for p in (index_dir / "shards").iterdir())
    lying = _lie(index_dir, **changes)

    report = verify_index(index_dir)
    assert not report.ok
    assert any(p.part == "manifest" and not p.repairable and message in p.message for p in report.problems), \
        report.problems
    r = cli("verify", "--index", index_dir)
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output, r.output

    for repair in (["--repair"], ["--repair", "--allow-drop"]):
        r = cli("verify", "--index", index_dir, *repair)
        assert r.exit_code == 1 and r.output.startswith("Error: ") and message in r.output, r.output
    assert json.loads((index_dir / "manifest.json").read_text()) == lying  # nothing published
    assert sorted(p.name for p in (index_dir / "shards").iterdir()) == shards  # nothing dropped

    with pytest.raises(IndexFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchEngine.open(index_dir)
    for command in ("info", "search"):
        r = cli(command, "--index", index_dir, *(["--like", "1"] if command == "search" else []))
        assert r.exit_code == 1 and r.output.startswith("Error: ") and "Traceback" not in r.output, r.output
        assert "does not match the data" in r.output or message in r.output, r.output


def test_an_index_of_images_records_its_model_and_a_lie_about_it_is_found(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        rng_image(i).save(src / f"{i}.png")
    index_images([src], tmp_path / "idx", IndexConfig(progress=False, backbone=NAME))
    store = EmbeddingStore(tmp_path / "idx")
    e = shard_evidence(store.shard_dir / store.read_manifest()["shards"][0])
    assert e.fingerprint["backbone"] == NAME and e.fingerprint["dim"] == PIXEL_DIM
    _lie(tmp_path / "idx", **{"backbone.name": "efficientnet-lite0", "dim": 1280})
    with pytest.raises(ManifestClaimError, match=f"dimension 1280, but every shard holds vectors of {PIXEL_DIM}"):
        SearchEngine.open(tmp_path / "idx")


def test_a_wrong_count_is_recounted_by_repair_without_dropping_anything(tmp_path):
    index_dir = _vectors_index(tmp_path)
    _lie(index_dir, count=7)
    assert any("says 7 images, the shards hold 30" in p.message for p in verify_index(index_dir).problems)
    result = repair_index(index_dir)
    assert result.dropped_shards == [] and result.after.ok and len(SearchEngine.open(index_dir)) == 30
