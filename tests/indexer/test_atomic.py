"""imgsearch.indexer.atomic: a local write leaves the old content or the new, never part of it, and is durable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from imgsearch.indexer import atomic
from imgsearch.indexer.atomic import (
    atomic_folder,
    atomic_path,
    atomic_write,
    atomic_write_bytes,
    fsync_dir,
)
from imgsearch.indexer.folder.store import EmbeddingStore
from tests.helpers import ROOT



class Interrupted(Exception):
    pass


@pytest.fixture
def fsyncs(monkeypatch):
    """Records what os.fsync is called on: ("dir" or "file", path) for each call (the real fsync runs)."""
    calls = []
    real = os.fsync

    def recording_fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        calls.append(("dir" if os.path.isdir(target) else "file", target))
        return real(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return calls


def test_atomic_write_replaces_the_file_and_syncs_file_and_folder(tmp_path, fsyncs):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old")
    with atomic_write(target) as f:
        f.write(b"new ")
        f.write(b"content")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new content"
    assert os.listdir(tmp_path) == ["data.bin"]
    files = [p for kind, p in fsyncs if kind == "file"]
    assert len(files) == 1 and ".data.bin." in files[0] and files[0].endswith(".tmp")  # the temp file, before the rename
    assert ("dir", str(tmp_path)) in fsyncs and fsyncs[-1] == ("dir", str(tmp_path))  # the rename, after it


def test_text_mode_and_bytes_helper(tmp_path, fsyncs):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    with atomic_write(tmp_path / "b.txt", "w", encoding="utf-8") as f:
        f.write("grüße\n")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "grüße\n"
    assert [kind for kind, _ in fsyncs] == ["file", "dir", "file", "dir"]
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', got 'ab'"):
        with atomic_write(tmp_path / "c", "ab"):
            pass


def test_a_writer_that_raises_mid_write_keeps_the_old_file_and_no_temp_file(tmp_path, fsyncs):
    target = tmp_path / "manifest.json"
    target.write_bytes(b'{"version": 1}')
    with pytest.raises(Interrupted):
        with atomic_write(target) as f:
            f.write(b'{"vers')
            f.flush()
            assert any(".tmp" in name for name in os.listdir(tmp_path))  # the half-written temp file exists
            raise Interrupted
    assert target.read_bytes() == b'{"version": 1}'
    assert os.listdir(tmp_path) == ["manifest.json"]
    assert fsyncs == []  # nothing is made durable for an abandoned write


def test_a_new_target_is_not_created_by_a_failed_write(tmp_path):
    with pytest.raises(Interrupted):
        with atomic_write(tmp_path / "new.bin") as f:
            f.write(b"partial")
            raise Interrupted
    assert os.listdir(tmp_path) == []


def test_atomic_path_for_writers_that_take_a_path(tmp_path, fsyncs):
    target = tmp_path / "w.npz"
    with atomic_path(target, suffix=".npz") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".w.npz.") and tmp.name.endswith(".tmp.npz")
        np.savez(tmp, x=np.arange(3))  # np.savez would append .npz to a name without it
    with np.load(target) as f:
        np.testing.assert_array_equal(f["x"], [0, 1, 2])
    assert os.listdir(tmp_path) == ["w.npz"]
    assert fsyncs[0][0] == "file" and fsyncs[0][1].endswith(".tmp.npz") and fsyncs[-1] == ("dir", str(tmp_path))

    with pytest.raises(Interrupted):
        with atomic_path(target, suffix=".npz") as tmp:
            np.savez(tmp, x=np.arange(5))
            raise Interrupted  # e.g. Ctrl-C after the library wrote its file
    with np.load(target) as f:
        np.testing.assert_array_equal(f["x"], [0, 1, 2])
    assert os.listdir(tmp_path) == ["w.npz"]


def test_tag_keeps_concurrent_writers_apart(tmp_path):
    with atomic_path(tmp_path / "t", tag="host-7") as tmp:
        assert tmp.name == ".t.host-7.tmp"
        tmp.write_bytes(b"x")
    assert (tmp_path / "t").read_bytes() == b"x"


def test_atomic_folder_replaces_a_whole_folder(tmp_path, fsyncs):
    target = tmp_path / "heads" / "cat"
    target.mkdir(parents=True)
    (target / "old.txt").write_text("old")
    with pytest.raises(Interrupted):
        with atomic_folder(target) as tmp:
            (tmp / "head.json").write_text("{}")
            raise Interrupted
    assert os.listdir(target) == ["old.txt"] and os.listdir(target.parent) == ["cat"]
    assert fsyncs == []

    with atomic_folder(target) as tmp:
        (tmp / "head.json").write_text("{}")
        (tmp / "head.npz").write_bytes(b"w")
    assert sorted(os.listdir(target)) == ["head.json", "head.npz"]
    assert os.listdir(target.parent) == ["cat"]  # neither the temporary folder nor the old one is left
    assert sorted(Path(p).name for kind, p in fsyncs if kind == "file") == ["head.json", "head.npz"]
    assert ("dir", str(target.parent)) == fsyncs[-1]


def test_fsync_dir_syncs_the_folder(tmp_path, fsyncs):
    fsync_dir(tmp_path)
    assert fsyncs == [("dir", str(tmp_path))]


def test_the_stores_start_up_clean_up_finds_every_temporary_name(tmp_path):
    store = EmbeddingStore(tmp_path)
    store.shard_dir.mkdir(parents=True)
    leftovers = [atomic.temp_path(tmp_path / "manifest.json"), atomic.temp_path(tmp_path / "index-000001.faiss"),
                 atomic.temp_path(tmp_path / "whitening-000001.npz", suffix=".npz"),
                 atomic.temp_path(store.shard_dir / "part-00003.parquet", tag="host-12")]
    for p in leftovers:
        p.write_bytes(b"half")
    (store.shard_dir / "part-00000.parquet").write_bytes(b"kept")
    store.remove_temp_files()
    assert not [p for p in leftovers if p.exists()]
    assert os.listdir(store.shard_dir) == ["part-00000.parquet"]


def test_the_stores_shards_and_manifest_are_synced_before_they_count(tmp_path, fsyncs):
    from imgsearch.indexer.folder.store import Row

    store = EmbeddingStore(tmp_path / "idx")
    rows = [Row(i, f"/x/{i}.jpg", "", 4, 4, "0" * 64, np.eye(8, dtype=np.float32)[i]) for i in range(3)]
    name = store.write_shard(rows, 8)
    store.publish({"backbone": {"name": "b"}, "dim": 8, "count": 3, "shards": [name], "index_file": None})
    synced = [(kind, Path(p)) for kind, p in fsyncs]
    assert synced == [("file", atomic.temp_path(store.shard_dir / name)), ("dir", store.shard_dir),
                      ("file", atomic.temp_path(store.manifest_path)), ("dir", store.root)]
    assert sorted(os.listdir(store.root)) == ["manifest.json", "shards"]


# Writers whose os.replace is not indexer.atomic's, each with the reason.
ALLOWED_REPLACE: dict[str, str] = {
    "indexer/inputs/samples.py": "renames npm's whole install of the emoji package into the cache (a folder npm "
                                 "wrote); lost in a power cut, it is installed again, nothing else is lost",
    "indexer/quiet.py": "rotates the libraries' log (what TensorFlow printed, kept for a person to read; nothing "
                        "reads it back)",
    "web/keys.py": "web never imports indexer (the layers); the keys file is written to a temp file, fsynced, "
                   "renamed and its folder fsynced there, as indexer.atomic does",
}


def test_every_local_writer_goes_through_indexer_atomic():
    """No hand-written temp-file-and-rename is left: a new one would skip the fsyncs."""
    offenders = []
    for package in ("indexer", "search", "web", "scripts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "indexer/atomic.py" or rel in ALLOWED_REPLACE:
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"\bos\.(replace|rename)\(|\.rename\(|\.replace\(tmp", line):
                    offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "write through indexer.atomic instead:\n" + "\n".join(offenders)


def test_every_file_a_manifest_names_is_synced_before_the_manifest(tmp_path, fsyncs):
    """Shards (rewritten ones too), FAISS index, trained index, whitening and heads' indexes: each is
    fsynced, and its folder after the rename, before the manifest that names it is replaced."""
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.folder.heads import head_index_path, list_heads
    from imgsearch.indexer.folder.store import Row
    from imgsearch.indexer.learn.classifiers import HeadTrainingConfig
    from imgsearch.indexer.publish.version import publish_index, resolve_options
    from imgsearch.indexer.run.heads import train_head
    from imgsearch.indexer.run.remove import remove_images
    from imgsearch.indexer.run.whiten import set_whitening

    store = EmbeddingStore(tmp_path / "idx")
    store.root.mkdir()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    shards = [store.write_shard([Row(i, f"/x/{i}.jpg", "ab"[i % 2], 4, 4, f"{i:064d}", vectors[i])
                                 for i in range(s, s + 100)], 16) for s in (0, 100, 200)]
    manifest = {"backbone": {"name": "b"}, "dim": 16, "metric": "cosine", "count": 0, "shards": [],
                "index_file": None, "generation": 0}
    options = resolve_options(manifest, IndexConfig(index_type="IVF4,Flat", use_gpu="no").ann_overrides())

    def check(step) -> dict:
        fsyncs.clear()
        step()
        published = store.read_manifest()
        synced = [(kind, Path(p)) for kind, p in fsyncs]
        manifest = ("file", atomic.temp_path(store.manifest_path))
        manifest_at = synced.index(manifest) if manifest in synced else len(synced)  # train-head publishes none
        files = [store.root / rel for rel in store.published_files(published)]
        files += [head_index_path(store.root, name, published) for name in list_heads(store.root)]
        for path in files:
            temps = [n for n, (kind, p) in enumerate(synced)  # its temporary name, suffix or not
                     if kind == "file" and p.parent == path.parent and p.name.startswith(f".{path.name}.")
                     and atomic.TEMP_MARK in p.name]
            # or written inside a temporary folder that replaces its folder whole (a head and its index)
            in_folder = [n for n, (kind, p) in enumerate(synced)
                         if kind == "file" and p.name.startswith(f".{path.name}.") and p.parent.parent == path.parent.parent
                         and p.parent.name.startswith(f".{path.parent.name}.") and atomic.TEMP_MARK in p.parent.name]
            if temps:  # written in this step: synced, renamed, its folder synced, before the manifest
                assert temps[-1] < synced.index(("dir", path.parent), temps[-1]) < manifest_at, path
            elif in_folder:  # synced, its folder renamed into place and the parent synced, before the manifest
                assert in_folder[-1] < synced.index(("dir", path.parent.parent), in_folder[-1]) < manifest_at, path
            else:  # carried over from a version published (and checked) before
                assert path.is_file() and any(path.name in str(p) for p in previous), path
        previous[:] = [p for _, p in synced] + list(previous)
        return published

    previous: list = [str(store.shard_dir / s) for s in shards]  # synced in write_shard, before the first check
    first = check(lambda: publish_index(store, manifest, shards, options=options))
    assert first["ann"]["trained_file"]
    assert check(lambda: set_whitening(store.root, dim=8))["whitening"]["file"]
    short = HeadTrainingConfig(model="svm")  # no Keras: its files are what is checked, not what it learnt
    check(lambda: train_head(store.root, "h", config=short))  # its files, and its index for the published version
    after = check(lambda: remove_images(store.root, [5]))
    assert after["shards"][-1] not in shards  # the shard holding id 5 was rewritten
