"""Resume after SIGKILL, --sync, remove, changed files, list inputs: ids stay stable."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.indexer.run.remove import remove_images
from imgsearch.search.engine import SearchEngine
from imgsearch.web.cli import main
from tests.helpers import ROOT, fake_model_env
from tests.pixel_model import NAME

CFG = IndexConfig(backbone=NAME, progress=False, decode_workers=0)
EXE = Path(sys.executable).parent / "imgsearch"


def rows(index_dir) -> dict:
    """path -> (id, sha256, embedding) of a published index."""
    store = EmbeddingStore(index_dir)
    t = store.read_table(store.read_manifest()["shards"])
    emb = embeddings_of(t)
    return {p: (i, s, e) for p, i, s, e in zip(t.column("path").to_pylist(), t.column("id").to_pylist(),
                                             t.column("sha256").to_pylist(), emb)}


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    from imgsearch.indexer.inputs.samples import export_sample

    dest = tmp_path_factory.mktemp("mnist300")
    export_sample("mnist", dest, limit=300)
    return dest


# `imgsearch ARGS...` that stops for good once it has written its HOLD_AT-th shard, and says so on stdout:
# the test kills it at that point, which it cannot have run past (the shard writer itself is the real one).
HOLD_AFTER_SHARDS = """
import sys, threading
from imgsearch.indexer.folder.store import EmbeddingStore

hold_at = int(sys.argv[1])
real_write_table = EmbeddingStore.write_table

def write_table_then_hold(self, table):
    name = real_write_table(self, table)
    if len(self.completed_shards()) >= hold_at:
        print("held after", name, flush=True)
        threading.Event().wait()  # until SIGKILL
    return name

EmbeddingStore.write_table = write_table_then_hold
from imgsearch.web.cli import main
main(sys.argv[2:], prog_name="imgsearch")
"""


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: /proc/PID/stat's fourth field)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow  # 5 s of CPU or more with its child processes (tests/cpu_report.py)
@pytest.mark.timeout(600)
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, mnist_dir):
    args = ["--batch-size", "8", "--shard-size", "25", "--no-progress", "--backbone", NAME]
    reference = tmp_path / "reference"
    run = subprocess.run([str(EXE), "index", str(mnist_dir), "--index", str(reference), *args],
                         capture_output=True, text=True, timeout=300, env=fake_model_env())
    assert run.returncode == 0, run.stderr

    killed = tmp_path / "killed"
    shard_dir = killed / "shards"
    proc = subprocess.Popen([sys.executable, "-c", HOLD_AFTER_SHARDS, "4", "index", str(mnist_dir),
                             "--index", str(killed), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=fake_model_env())
    with proc.stdout:
        said = []
        for line in proc.stdout:  # blocks until the run holds, or ends (EOF) without ever holding
            if line.startswith("held after"):
                said.append(line)
                break
        assert said == ["held after part-00003.parquet\n"], "the run never reached its fourth shard"
        assert proc.poll() is None  # still running: the kill below interrupts it
        workers = _children(proc.pid)  # its decoding processes (300 files: processes, not threads)
        assert workers, "the run decoded in no process of its own"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    # nothing can tell them (a SIGKILL runs no handler): they see their parent gone and end, not wait for ever
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in workers if _alive(p)], "decoding processes outlived the killed run"
    done = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in shard_dir.glob("part-*.parquet")}
    assert sorted(done) == [f"part-{i:05d}.parquet" for i in range(4)]  # 4 of the 12 shards: killed mid-way
    assert EmbeddingStore(killed).read_manifest()["count"] == 0  # nothing was half-published

    run = subprocess.run([str(EXE), "index", str(mnist_dir), "--index", str(killed), *args],
                         capture_output=True, text=True, timeout=300, env=fake_model_env())
    assert run.returncode == 0, run.stderr
    assert f"{len(done) * 25} already indexed" in run.stdout
    for name, stamp in done.items():  # completed shards were kept, not recomputed
        p = shard_dir / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    assert set(done) <= set(EmbeddingStore(killed).read_manifest()["shards"])

    a, b = rows(reference), rows(killed)
    assert len(a) == 300 and a.keys() == b.keys()
    for path, (i, sha, emb) in a.items():
        assert b[path][0] == i and b[path][1] == sha
        np.testing.assert_allclose(b[path][2], emb, atol=1e-6)


def test_sync_remove_and_changed_files(tmp_path, emoji_dir, photos_dir):
    src = tmp_path / "src"
    shutil.copytree(emoji_dir, src)
    shutil.copytree(photos_dir, src / "photos")
    index_dir = tmp_path / "idx"
    index_images([src], index_dir, CFG)
    before = rows(index_dir)

    # a file deleted, a file changed in place
    gone = src / "photos" / "rocket.jpg"
    gone.unlink()
    changed = src / "photos" / "coffee.jpg"
    Image.open(photos_dir / "coffee.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(changed, quality=90)

    plain = index_images([src], index_dir, CFG)  # without --sync: the change is picked up, nothing removed
    assert plain.changed == 1 and plain.added == 1 and plain.removed == 0
    assert str(gone) in rows(index_dir)

    synced = index_images([src], index_dir, CFG, sync=True)
    assert synced.removed == 1 and synced.added == 0
    after = rows(index_dir)
    assert str(gone) not in after
    assert after[str(changed)][0] == before[str(changed)][0]  # same id
    assert after[str(changed)][1] != before[str(changed)][1]  # new content
    assert float(after[str(changed)][2] @ before[str(changed)][2]) < 0.999  # new embedding
    for path, (i, sha, emb) in after.items():  # everything else untouched
        if path != str(changed):
            assert before[path][0] == i and before[path][1] == sha

    engine = SearchEngine.open(index_dir)
    hits = engine.search_image(photos_dir / "rocket.jpg", k=len(engine))
    assert all(h.path != str(gone) for h in hits)
    assert engine.search_image(changed, k=1)[0].path == str(changed)
    # shards hold no stale rows: every row is published exactly once; the shards the sync replaced
    # stay on disk, unpublished, until the next version (the previous one may still be being served)
    store = EmbeddingStore(index_dir)
    manifest = store.read_manifest()
    assert manifest["retired_shards"] and not set(manifest["retired_shards"]) & set(manifest["shards"])
    assert sorted(store.completed_shards()) == sorted(manifest["shards"] + manifest["retired_shards"])
    remove_images(index_dir, [after[str(changed)][0]])  # the next version
    assert not set(manifest["retired_shards"]) & set(store.completed_shards())


def test_remove_by_id_and_path(tmp_path, emoji_dir):
    index_dir = tmp_path / "idx"
    index_images([emoji_dir], index_dir, IndexConfig(backbone=NAME, progress=False, decode_workers=0, shard_size=7))
    before = rows(index_dir)
    by_id = {i: p for p, (i, _, _) in before.items()}
    victim_path = by_id[3]
    r = CliRunner().invoke(main, ["remove", "--index", str(index_dir), "10", victim_path])
    assert r.exit_code == 0, r.output
    assert "removed 2 images" in r.output
    after = rows(index_dir)
    assert len(after) == len(before) - 2 and victim_path not in after and by_id[10] not in after
    assert {p: v[0] for p, v in after.items()} == {p: v[0] for p, v in before.items() if v[0] not in (3, 10)}
    engine = SearchEngine.open(index_dir)
    assert 10 not in [h.id for h in engine.search_id(11, k=len(engine) - 1)]
    r = CliRunner().invoke(main, ["remove", "--index", str(index_dir), "99999", "/no/such.png"])
    assert r.exit_code == 1 and "not in the index: 99999, /no/such.png" in r.output
    # removing the highest id, then adding: fresh ids, never reused ones
    top = max(v[0] for v in after.values())
    top_path = next(p for p, v in after.items() if v[0] == top)
    assert remove_images(index_dir, [top]).removed == [top]
    summary = index_images([emoji_dir], index_dir, CFG)
    assert summary.added == 3
    assert rows(index_dir)[top_path][0] > top
    new_ids = {v[0] for p, v in rows(index_dir).items() if p in (victim_path, by_id[10], top_path)}
    assert min(new_ids) > max(v[0] for v in before.values())


def test_interrupted_removal_is_never_served_half_done(tmp_path, emoji_dir, monkeypatch):
    from imgsearch.indexer.run import remove as removal

    index_dir = tmp_path / "idx"
    index_images([emoji_dir], index_dir, IndexConfig(backbone=NAME, progress=False, decode_workers=0, shard_size=7))
    before = rows(index_dir)

    def crash(*a, **k):
        raise KeyboardInterrupt  # killed after the replacement shards were written, before publishing

    monkeypatch.setattr(removal, "publish_index", crash)
    with pytest.raises(KeyboardInterrupt):
        remove_images(index_dir, [0, 1, 2])
    monkeypatch.undo()
    assert rows(index_dir).keys() == before.keys()  # the published index is unchanged
    again = index_images([emoji_dir], index_dir, CFG)  # the leftover replacement is discarded
    assert again.added == 0 and rows(index_dir).keys() == before.keys()


def test_list_inputs_txt_csv_parquet(tmp_path, photos_dir):
    files = sorted(photos_dir.glob("*.jpg"))
    (tmp_path / "list.txt").write_text("# my photos\n" + "\n".join(str(f) for f in files[:3]) + "\n")
    (tmp_path / "list.csv").write_text("path,label\n" + "".join(f"{os.path.relpath(f, tmp_path)},csvlabel\n"
                                                                for f in files[3:5]))
    pq.write_table(pa.table({"path": [str(f) for f in files[5:]], "label": ["pq"] * len(files[5:])}),
                   tmp_path / "list.parquet")
    index_dir = tmp_path / "idx"
    summary = index_images([tmp_path / "list.txt", tmp_path / "list.csv", tmp_path / "list.parquet"],
                           index_dir, CFG)
    assert summary.added == len(files)
    labels = {Path(p).name: None for p in rows(index_dir)}
    t = EmbeddingStore(index_dir).read_table(EmbeddingStore(index_dir).read_manifest()["shards"], ["path", "label"])
    labels = dict(zip((Path(p).name for p in t.column("path").to_pylist()), t.column("label").to_pylist()))
    assert labels[files[0].name] == photos_dir.name  # parent folder when the list gives none
    assert labels[files[3].name] == "csvlabel" and labels[files[-1].name] == "pq"
    (tmp_path / "bad.csv").write_text("file\nx.jpg\n")
    with pytest.raises(ValueError, match="needs a 'path' column"):
        index_images([tmp_path / "bad.csv"], index_dir, CFG)


def test_decoding_in_worker_processes_matches_in_thread(tmp_path, emoji_dir):
    a, b = tmp_path / "a", tmp_path / "b"
    index_images([emoji_dir], a, IndexConfig(backbone=NAME, progress=False, decode_workers=0))
    index_images([emoji_dir], b, IndexConfig(backbone=NAME, progress=False, decode_workers=2))
    ra, rb = rows(a), rows(b)
    assert ra.keys() == rb.keys()
    for p in ra:
        assert ra[p][0] == rb[p][0]
        np.testing.assert_allclose(ra[p][2], rb[p][2], atol=1e-6)


@pytest.mark.timeout(300)
def test_script_without_main_guard_gets_a_clear_message(tmp_path, photos_dir):
    script = tmp_path / "unguarded.py"
    script.write_text("from imgsearch.indexer.config import IndexConfig\nfrom imgsearch.indexer.run.pipeline import index_images\n"
                      f"index_images([{str(photos_dir)!r}], {str(tmp_path / 'idx')!r}, "
                      f"IndexConfig(backbone={NAME!r}, progress=False, decode_workers=1))\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=280,
                         cwd=ROOT, env=fake_model_env())
    assert run.returncode != 0
    assert 'if __name__ == "__main__":' in run.stderr and "decode_workers=0" in run.stderr
