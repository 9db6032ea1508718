"""Bad, hostile and odd-but-valid files: the indexer skips each bad one with its reason and indexes
the rest correctly; the web API answers 400/413 with a message for each bad upload; nothing hangs
and no temporary file is left behind."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.run.pipeline import index_images
from tests.bad_images import encode, png_declaring, write_corpus
from tests.helpers import fake_model_env
from tests.pixel_model import NAME


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory, photos_dir):
    folder = tmp_path_factory.mktemp("bad-corpus")
    return folder, write_corpus(folder, photos_dir)


@pytest.fixture(scope="module")
def bad_index(tmp_path_factory, bad_corpus, lite0):
    """The bad corpus indexed with efficientnet-lite0 (float32, as ``embedder``): its embeddings measure whether
    odd files decode to the same picture, a measure calibrated on the CNN (tolerances of 0.98 to 0.999)."""
    folder, _ = bad_corpus
    index_dir = tmp_path_factory.mktemp("bad-index") / "idx"
    # one worker process: the pipe, /dev/zero and the bombs go through the real process pool
    summary = index_images([folder], index_dir, IndexConfig(progress=False, decode_workers=1, precision="float32"))
    return index_dir, summary


def _rows(index_dir) -> dict[str, dict]:
    store = EmbeddingStore(index_dir)
    table = store.read_table(store.read_manifest()["shards"])
    vectors = embeddings_of(table)
    return {Path(r["path"]).name: dict(r, vector=v)
            for r, v in zip(table.select(["path", "width", "height", "id"]).to_pylist(), vectors)}


@pytest.mark.timeout(120)
def test_indexer_skips_each_bad_file_with_its_reason(bad_index, bad_corpus):
    index_dir, summary = bad_index
    folder, cases = bad_corpus
    bad = {name: c for name, c in cases.items() if c.reason}
    skipped = {Path(path).name: reason for path, reason in summary.skipped}
    assert set(skipped) == set(bad)
    for name, case in bad.items():
        assert case.reason in skipped[name], (name, skipped[name])
    log = (index_dir / "skipped.log").read_text()
    for name, case in bad.items():
        line = next(line for line in log.splitlines() if f"/{name}\t" in line)
        assert case.reason in line
    printed = "\n".join(summary.lines())
    assert f"{len(bad)} skipped" in printed and "skipped.log" in printed
    assert "broken_link.jpg: broken symbolic link" in printed
    # everything else is indexed, once each
    assert summary.found == len(cases)
    assert summary.added == summary.total == len(cases) - len(bad) and summary.duplicates == 0


@pytest.mark.timeout(60)
def test_odd_but_valid_images_are_indexed_correctly(bad_index, bad_corpus):
    index_dir, _ = bad_index
    _, cases = bad_corpus
    rows = _rows(index_dir)
    valid = {name: c for name, c in cases.items() if not c.reason}
    assert set(rows) == set(valid)
    for name, case in valid.items():
        row = rows[name]
        assert (row["width"], row["height"]) == case.size, name
        assert np.isfinite(row["vector"]).all() and np.linalg.norm(row["vector"]) == pytest.approx(1, abs=1e-5)
        if case.same_as:
            cosine = float(row["vector"] @ rows[case.same_as]["vector"])
            assert cosine >= case.min_cosine, (name, case.same_as, cosine)


@pytest.mark.timeout(60)
def test_exif_tolerance_would_catch_an_unrotated_photo(bad_index, photos_dir, embedder):
    """The control for the EXIF case: the same photo left sideways is far outside its tolerance."""
    rows = _rows(bad_index[0])
    coffee = Image.open(photos_dir / "coffee.jpg").convert("RGB")
    sideways = decode_image(encode(coffee.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95),
                            embedder.backbone.input_size)
    cosine = float(embedder.embed(sideways.array[None])[0] @ rows["upright.jpg"]["vector"])
    assert cosine < 0.9


@pytest.mark.timeout(60)
def test_index_folder_holds_no_temporary_files(bad_index):
    index_dir, _ = bad_index
    from imgsearch.indexer.folder.features import FEATURES_FILE
    from imgsearch.indexer.folder.lock import LOCK_FILE

    names = sorted(str(p.relative_to(index_dir)) for p in index_dir.rglob("*"))
    # the writer lock stays (empty while nobody writes); nothing else hidden or temporary does
    assert not [n for n in names if n != LOCK_FILE and (Path(n).name.startswith(".") or ".tmp" in n)], names
    assert not (index_dir / LOCK_FILE).read_bytes()
    manifest = EmbeddingStore(index_dir).read_manifest()
    # FEATURES_FILE: the duplicates verifier's side table, written by indexing
    expected = {"manifest.json", "skipped.log", LOCK_FILE, manifest["index_file"], "shards", FEATURES_FILE,
                *(f"shards/{s}" for s in manifest["shards"])}
    assert set(names) == expected


def _drop_read_override() -> list[str]:
    """Command prefix under which chmod 000 really makes a file unreadable.

    Root reads any file through the CAP_DAC_OVERRIDE capability; dropping it
    (and CAP_DAC_READ_SEARCH) from the bounding set makes root obey the
    permission bits like everyone else, without changing user.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux setpriv: cannot make a file unreadable to root")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"]


@pytest.mark.timeout(120)
def test_unreadable_file_is_skipped_by_the_index_command(tmp_path, photos_dir):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(photos_dir / "rocket.jpg", src / "rocket.jpg")
    locked = src / "locked.jpg"
    shutil.copy(photos_dir / "coffee.jpg", locked)
    locked.chmod(0)
    prefix = _drop_read_override()
    probe = subprocess.run([*prefix, "cat", str(locked)], capture_output=True)
    if probe.returncode == 0:  # e.g. a container that does not let root drop capabilities
        pytest.skip("this process cannot make a file unreadable to itself (setpriv did not drop the override)")
    imgsearch = Path(sys.executable).with_name("imgsearch")
    run = subprocess.run([*prefix, str(imgsearch), "index", str(src), "--index", str(tmp_path / "idx"),
                          "--no-progress", "--workers", "0", "--backbone", NAME], capture_output=True, text=True,
                         timeout=110, env=fake_model_env())
    assert run.returncode == 0, run.stderr
    assert "indexed 1 new images" in run.stdout and "1 skipped" in run.stdout
    assert f"{locked}: cannot read file: Permission denied" in run.stdout
    assert f"{locked}\tcannot read file: Permission denied" in (tmp_path / "idx" / "skipped.log").read_text()


# ---------------------------------------------------------------- the same files uploaded


def _post(url: str, endpoint: str, name: str, data: bytes, **fields):
    return requests.post(f"{url}/api/{endpoint}", files={"image": (name, data)}, data=fields, timeout=60)


@pytest.mark.timeout(120)
def test_uploads_get_400_or_413_with_a_message_and_odd_images_200(live_server, headed_server, bad_corpus):
    _, cases = bad_corpus
    problems = []
    for name, case in cases.items():
        if case.data is None:  # pipes and links exist only on disk
            continue
        for server, endpoint in ((live_server, "search"), (headed_server, "classify")):
            r = _post(server.url, endpoint, name, case.data)
            if r.status_code != case.status:
                problems.append((endpoint, name, r.status_code, r.text[:200]))
                continue
            body = r.json()
            if case.status == 200:
                assert body["results" if endpoint == "search" else "predictions"], (endpoint, name)
                continue
            error = body["error"]
            code = "image_too_large" if case.status == 413 else "invalid_image"
            if error["code"] != code or case.reason not in error["message"] or name not in error["message"]:
                problems.append((endpoint, name, error))
    assert problems == []


@pytest.mark.timeout(60)
def test_rotated_and_cmyk_uploads_find_the_same_photo(live_server, bad_corpus):
    _, cases = bad_corpus
    for name in ("upright.jpg", "exif_rotated.jpg", "cmyk.jpg"):
        r = _post(live_server.url, "search", name, cases[name].data, k=3)
        assert r.status_code == 200
        assert r.json()["results"][0]["path"].endswith("photos/coffee.jpg"), name


@pytest.mark.timeout(60)
def test_configured_pixel_limit_refuses_before_decoding(live_server):
    """60 megapixels is under the decoder's ceiling but over the server's 50: refused from the header.

    The file's pixel data is cut short, so decoding it would fail with "truncated"; the 413
    says "too large", so the limit was applied before decoding anything.
    """
    r = _post(live_server.url, "search", "tall.png", png_declaring(10_000, 6_000))
    assert r.status_code == 413
    assert r.json()["error"] == {
        "code": "image_too_large",
        "message": "tall.png: image too large: 10000 x 6000 pixels (60.0 megapixels); "
                   "at most 50 megapixels are decoded"}


@pytest.mark.timeout(60)
def test_pixel_limit_is_a_setting(live_server):
    from imgsearch.web import create_app

    app = create_app({"MAX_IMAGE_PIXELS": 1000, "WARM_UP": False}, engine=live_server.app.extensions["imgsearch"])
    client = app.test_client()
    for size, status in (((40, 25), 200), ((40, 26), 413)):  # 1000 and 1040 pixels
        data = encode(Image.new("RGB", size, (90, 160, 30)), "PNG")
        r = client.post("/api/search", data={"image": (io.BytesIO(data), "x.png")})
        assert r.status_code == status, r.get_json()
    assert client.get("/api/info").get_json()["max_image_pixels"] == 1000
    with pytest.raises(ValueError, match="MAX_IMAGE_PIXELS must be an integer between 1 and 180,000,000"):
        create_app({"MAX_IMAGE_PIXELS": 10**9}, engine=live_server.app.extensions["imgsearch"])


@pytest.mark.timeout(60)
def test_uploads_leave_no_temporary_files(live_server, built_index, monkeypatch, tmp_path):
    """Large uploads are spooled to disk (waitress over 512 KB, Werkzeug over 500 KB): nothing stays."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where both servers' spool files go
    index_dir = built_index[0]
    before = sorted(p.name for p in index_dir.rglob("*"))
    rng = np.random.default_rng(0)
    noise = encode(Image.fromarray(rng.integers(0, 256, (700, 700, 3), np.uint8)), "PNG")  # ~1.5 MB
    assert 1_000_000 < len(noise) < 2 * 1024 * 1024
    assert _post(live_server.url, "search", "noise.png", noise).status_code == 200
    assert _post(live_server.url, "search", "noise.jpg", noise[: len(noise) // 2]).status_code == 400
    assert _post(live_server.url, "search", "junk.jpg", rng.bytes(1_500_000)).status_code == 400
    assert _post(live_server.url, "search", "huge.jpg", rng.bytes(3 * 1024 * 1024)).status_code == 413
    assert list(spool.iterdir()) == []
    assert sorted(p.name for p in index_dir.rglob("*")) == before


@pytest.mark.timeout(60)
def test_thumbnail_of_a_file_turned_hostile_is_404_at_once(bad_index, bad_corpus):
    """An indexed file later replaced by a pipe, a link to /dev/zero or a bomb: no hang, no 500 (the bomb is
    other bytes than those indexed: 409 file_changed, before a byte of it is decoded)."""
    from imgsearch.search.engine import SearchEngine
    from imgsearch.web import create_app

    folder, _ = bad_corpus
    engine = SearchEngine.open(bad_index[0])
    client = create_app({"WARM_UP": False}, engine=engine).test_client()
    target = folder / "jpeg_named.png"
    row_id = next(int(i) for i in engine.ids if engine.get(int(i)).path == str(target))
    assert client.get(f"/api/images/{row_id}?size=64").status_code == 200
    backup = target.with_name("backup.bin")
    target.rename(backup)
    try:
        unavailable, changed = (404, "image_unavailable"), (409, "file_changed")  # other bytes: another picture
        for make, answer, reason in (
                (lambda: os.mkfifo(target), unavailable, "not a regular file (a named pipe)"),
                (lambda: target.symlink_to("/dev/zero"), unavailable, "not a regular file (a character device)"),
                (lambda: target.write_bytes(png_declaring(30_000, 30_000)), changed, "changed since it was indexed")):
            make()
            r = client.get(f"/api/images/{row_id}?size=64")
            assert (r.status_code, r.get_json()["error"]["code"]) == answer
            assert reason in r.get_json()["error"]["message"]
            target.unlink()
    finally:
        target.unlink(missing_ok=True)
        backup.rename(target)
