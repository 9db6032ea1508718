"""Crash safety: `imgsearch verify` finds damaged files, SearchEngine.open refuses them, --repair rebuilds."""

import json
import shutil

import numpy as np
from pathlib import Path
from PIL import Image
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import (
    EmbeddingStore,
    IndexFormatError,
    embeddings_of,
    file_sha256,
)
from imgsearch.indexer.folder.verify import verify_index
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.search.engine import SearchEngine
from imgsearch.web.cli import main
from tests.pixel_model import DIM, NAME


@pytest.fixture
def index_copy(built_index, tmp_path):
    copy = tmp_path / "idx"
    shutil.copytree(built_index[0], copy)
    return copy


def verify(index_dir, *args):
    return CliRunner().invoke(main, ["verify", "--index", str(index_dir), *args])


def garble_column(path, column: str) -> None:
    """Flip 16 bytes in the middle of one column's data in a shard: same size, different content."""
    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunk = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema.startswith(column))
    start = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
    path.write_bytes(bytes(data))


def rewrite_manifest(index_dir, **changes) -> dict:
    """Edit the manifest in place, as a buggy tool or a hand edit would (no re-recording)."""
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    manifest = {k: v for k, v in manifest.items() if v is not None}
    path.write_text(json.dumps(manifest))
    return manifest


def test_intact_index_verifies(index_copy):
    manifest = EmbeddingStore(index_copy).read_manifest()
    assert set(manifest["files"]) == {*(f"shards/{s}" for s in manifest["shards"]), manifest["index_file"]}
    r = verify(index_copy)
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"OK: {index_copy}: {manifest['count']} images in {len(manifest['shards'])} shard(s)")
    assert f"{len(manifest['shards']) + 1} file(s) match their recorded sha256" in r.output
    report = json.loads(verify(index_copy, "--json").output)
    assert report["ok"] and report["problems"] == [] and report["images"] == manifest["count"]


def test_truncated_shard_is_found_refused_and_repaired(index_copy, corpus):
    store = EmbeddingStore(index_copy)
    manifest = store.read_manifest()
    name = manifest["shards"][1]
    lost = pq.read_metadata(store.shard_dir / name).num_rows
    data = (store.shard_dir / name).read_bytes()
    (store.shard_dir / name).write_bytes(data[: len(data) // 2])

    r = verify(index_copy)
    assert r.exit_code == 1
    assert f"DAMAGED: {index_copy}" in r.output
    assert f"shards/{name}: is {len(data) // 2} bytes, {len(data)} when it was published: truncated" in r.output
    assert f"shards/{name}: cannot be read" in r.output
    with pytest.raises(IndexFormatError, match=rf"{name} is {len(data) // 2} bytes but was {len(data)} when it was "
                                               "published: it was truncated or overwritten"):
        SearchEngine.open(index_copy)

    r = verify(index_copy, "--repair")  # never fewer images than found, unless told so
    assert r.exit_code == 1 and r.output.startswith("Error: ") and "--allow-drop" in r.output, r.output
    assert f"would drop 1 damaged shard(s) of {len(manifest['shards'])}: {name}" in r.output
    assert EmbeddingStore(index_copy).read_manifest() == manifest  # nothing changed
    r = verify(index_copy, "--repair", "--allow-drop")
    assert r.exit_code == 0, r.output
    assert f"dropped 1 damaged shard(s) ({name}) with {lost} image(s)" in r.output
    engine = SearchEngine.open(index_copy)
    assert len(engine) == manifest["count"] - lost
    # the next indexing run of the same folder embeds the dropped images again
    summary = index_images([corpus], index_copy, IndexConfig(backbone=NAME, progress=False, decode_workers=0))
    assert summary.added == lost and summary.total == manifest["count"]
    assert verify_index(index_copy).ok


def test_garbled_shard_never_gives_wrong_results(index_copy, built_index):
    store = EmbeddingStore(index_copy)
    manifest = store.read_manifest()
    name = manifest["shards"][0]
    ids = pq.read_table(store.shard_dir / name, columns=["id"]).column("id").to_pylist()
    garble_column(store.shard_dir / name, "embedding")

    report = verify_index(index_copy)
    assert not report.ok
    messages = [p.message for p in report.problems if p.path == f"shards/{name}"]
    assert any("sha256 differs" in m for m in messages), messages
    assert any("CRC checksum verification failed" in m for m in messages), messages
    with pytest.raises(IndexFormatError, match=f"shards/{name}: content changed since it was published"):
        SearchEngine.open(index_copy, verify=True)
    # the cheap open does not read embeddings; a query that needs this shard's vectors fails, never misreads
    engine = SearchEngine.open(index_copy)
    with pytest.raises(IndexFormatError, match=f"shard {name} of .* is unreadable: .*CRC checksum verification failed"):
        engine.search_id(ids[0])
    intact = SearchEngine.open(built_index[0])
    query = intact.vector(ids[0])
    assert [h.id for h in engine.search_vector(query, k=10)] == [h.id for h in intact.search_vector(query, k=10)]

    # paths are read for the replies that show them: a damaged one fails that reply, never names a wrong file
    second = manifest["shards"][1]
    garble_column(store.shard_dir / second, "path")
    second_ids = pq.read_table(store.shard_dir / second, columns=["id"]).column("id").to_pylist()
    engine = SearchEngine.open(index_copy)
    with pytest.raises(IndexFormatError, match=f"shard {second} of .* is unreadable: .*CRC checksum verification"):
        engine.get(second_ids[0])
    garble_column(store.shard_dir / second, "label")  # ids and labels are read on open: refused
    with pytest.raises(IndexFormatError, match="unreadable: .*CRC checksum verification failed"):
        SearchEngine.open(index_copy)


def test_truncated_faiss_index_is_found_refused_and_rebuilt(index_copy, built_index):
    store = EmbeddingStore(index_copy)
    manifest = store.read_manifest()
    path = index_copy / manifest["index_file"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])

    r = verify(index_copy)
    assert r.exit_code == 1
    assert f"{manifest['index_file']}: is {len(data) * 2 // 3} bytes, {len(data)} when it was published" in r.output
    assert f"{manifest['index_file']}: is not a readable FAISS index (truncated or damaged)" in r.output
    with pytest.raises(IndexFormatError, match="truncated or overwritten"):
        SearchEngine.open(index_copy)
    # published by an older imgsearch (no sizes recorded): FAISS itself refuses the file
    rewrite_manifest(index_copy, files=None)
    with pytest.raises(IndexFormatError, match=f"{manifest['index_file']} is unreadable"):
        SearchEngine.open(index_copy)
    assert "records no sizes or checksums" in verify(index_copy).output

    r = verify(index_copy, "--repair")
    assert r.exit_code == 0, r.output
    assert "rebuilt the FAISS index" in r.output and "OK:" in r.output
    repaired, intact = SearchEngine.open(index_copy), SearchEngine.open(built_index[0])
    assert repaired.generation == manifest["generation"] + 1
    for row_id in intact.ids[::9]:
        assert [h.id for h in repaired.search_id(row_id, k=5)] == [h.id for h in intact.search_id(row_id, k=5)]


def _index_over(store: EmbeddingStore, manifest: dict, shards: list[str], permute: bool = False):
    import faiss

    t = store.read_table(shards, ["id", "embedding"])
    vectors = embeddings_of(t)
    if permute:  # right ids, right count, wrong vectors
        vectors = vectors[np.random.default_rng(0).permutation(len(vectors))]
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vectors.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vectors), t.column("id").to_numpy())
    faiss.write_index(index, str(store.root / manifest["index_file"]))
    path = store.root / manifest["index_file"]
    # the manifest's record updated to match, as if the wrong file had been published: only the contents can tell
    files = dict(manifest["files"], **{manifest["index_file"]: {"size": path.stat().st_size,
                                                               "sha256": file_sha256(path)}})
    rewrite_manifest(store.root, files=files)


def test_valid_faiss_index_with_wrong_count_or_vectors(index_copy):
    store = EmbeddingStore(index_copy)
    manifest = store.read_manifest()
    first = pq.read_metadata(store.shard_dir / manifest["shards"][0]).num_rows
    _index_over(store, manifest, manifest["shards"][:1])
    r = verify(index_copy)
    assert r.exit_code == 1
    assert (f"{manifest['index_file']}: holds {first} vectors of dimension {DIM}, the manifest says "
            f"{manifest['count']} of dimension {DIM}") in r.output
    with pytest.raises(IndexFormatError, match=f"FAISS index has {first} vectors of dimension {DIM}, manifest says "
                                               f"{manifest['count']}"):
        SearchEngine.open(index_copy)

    _index_over(store, manifest, manifest["shards"], permute=True)
    report = verify_index(index_copy)
    assert [p.path for p in report.problems] == [manifest["index_file"]]
    assert "does not find them: its vectors do not match the shards" in report.problems[0].message
    assert verify(index_copy, "--repair").exit_code == 0
    assert verify_index(index_copy).ok


def test_head_index_and_manifest_damage(headed_index, tmp_path):
    from imgsearch.indexer.folder.heads import head_index_path

    copy = tmp_path / "idx"
    shutil.copytree(headed_index, copy)
    manifest = EmbeddingStore(copy).read_manifest()
    head_file = head_index_path(copy, "cat", manifest)
    head_file.write_bytes(head_file.read_bytes()[:100])
    r = verify(copy)
    assert r.exit_code == 1
    assert f"heads/cat/{head_file.name}: is not a readable FAISS index" in r.output
    assert verify(copy, "--repair").exit_code == 0
    assert SearchEngine.open(copy).search_id(0, k=3, head="cat")

    (copy / "manifest.json").write_text('{"format_version": 1, "shards": [')
    r = verify(copy)
    assert r.exit_code == 1 and "manifest.json is unreadable" in r.output and "not repairable in place" in r.output
    r = verify(copy, "--repair")
    assert r.exit_code == 1 and "cannot repair in place" in r.output


NO_INDEX_FOLDERS = ["no such folder", "an empty folder", "a folder of other files"]


@pytest.mark.parametrize("made", NO_INDEX_FOLDERS)
def test_verify_of_a_folder_that_is_no_index_says_so_and_not_damaged(tmp_path, made):
    """A mistyped --index is not a damaged index: one error line, not a report telling to restore a backup."""
    folder = tmp_path / "idx"
    if made != "no such folder":
        folder.mkdir()
    if made == "a folder of other files":
        (folder / "notes.txt").write_text("x")
    for args in (["verify"], ["verify", "--repair"], ["verify", "--json"]):
        result = CliRunner().invoke(main, [*args, "--index", str(folder)])
        assert result.exit_code == 1, (args, result.output)
        assert "not an imgsearch index" in result.output, (args, result.output)
        assert "DAMAGED" not in result.output and "backup" not in result.output, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert not folder.exists() or sorted(p.name for p in folder.iterdir()) == (["notes.txt"] if "other" in made else [])


def test_a_folder_with_shards_but_no_manifest_is_damage(tmp_path, built_index):
    folder = tmp_path / "idx"
    shutil.copytree(built_index[0], folder)
    (folder / "manifest.json").unlink()
    result = CliRunner().invoke(main, ["verify", "--index", str(folder)])
    assert result.exit_code == 1 and "DAMAGED" in result.output, result.output


@pytest.mark.parametrize("command", [["remove", "1"], ["train-head", "--name", "h"], ["whiten"], ["build-index"],
                                     ["verify", "--repair"]])
def test_a_writer_given_a_folder_that_is_no_index_leaves_it_as_it_was(tmp_path, command):
    """A command that updates an index, pointed at a folder of pictures by mistake, refuses in one line and
    writes nothing there: a writer's lock file left behind would mark the folder as an index folder, which
    indexing then never lists (indexer/inputs/outputs.py)."""
    from imgsearch.indexer.inputs.sources import iter_image_files

    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("RGB", (32, 32), "red").save(pictures / "red.png")
    result = CliRunner().invoke(main, [command[0], "--index", str(pictures), *command[1:]])
    assert result.exit_code != 0 and "not an imgsearch index" in result.output, result.output
    assert sorted(p.name for p in pictures.iterdir()) == ["red.png"]
    assert [Path(f.path).name for f in iter_image_files([tmp_path])] == ["red.png"]
