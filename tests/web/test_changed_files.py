"""An indexed file changed since indexing is never read as if it were the indexed one (issue 30, item 3).

Every re-read of an indexed file (a region query by id, a thumbnail, the keypoint checks of duplicates,
explain) goes through ``search/thumbnails.py``'s ``read_indexed``: its bytes are checked against the
shard's size and sha256.  A changed file answers 409 ``file_changed`` saying what changed, a file gone
404 ``image_unavailable``; a file only touched is still served.  Real index (fake model), real server.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgsearch.search.engine import SearchEngine
from imgsearch.search.errors import ChangedFileError, ImageUnavailableError
from imgsearch.search.thumbnails import read_checked, read_indexed
from tests.helpers import LiveServer, rng_image


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """(folder of images, index folder): 6 random pictures, BMP (so another picture can have the same size)."""
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from tests.pixel_model import NAME

    root = tmp_path_factory.mktemp("changed")
    images = root / "images"
    images.mkdir()
    for i in range(6):
        rng_image(i, (120, 90)).save(images / f"p{i}.bmp")
    index_images([images], root / "idx", IndexConfig(progress=False, backbone=NAME))
    return images, root / "idx"


@pytest.fixture
def files(index):
    """Each test gets back the indexed bytes, whatever the one before did to them."""
    images, _ = index
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in images.iterdir()}
    yield images
    for p, (data, mtime) in kept.items():
        p.write_bytes(data)
        os.utime(p, ns=(mtime, mtime))


@pytest.fixture(scope="module")
def server(index):
    from imgsearch.web import create_app

    live = LiveServer(create_app({"INDEX_DIR": str(index[1])}))
    yield live
    live.close()


@pytest.fixture(scope="module")
def engine(index):
    return SearchEngine.open(index[1])


def _id_of(engine, name: str) -> int:
    return next(int(i) for i in engine.ids if engine.get(int(i)).path.endswith(name))


def _same_size_other_picture(path):
    """Another picture in the file, of exactly its size, written within the same second (same mtime seconds)."""
    before = path.stat()
    rng_image(99, (120, 90)).save(path)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # even the modification time put back


def _other_size_picture(path):
    rng_image(98, (140, 90)).save(path)


def _not_an_image(path):
    path.write_bytes(b"this is not a picture any more")


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CHANGES = [_same_size_other_picture, _other_size_picture, _not_an_image, _truncated]


def _requests(server, row_id):
    """Every HTTP surface that reads the file again: (method, url, kwargs)."""
    return [
        ("GET", f"{server.url}/api/images/{row_id}", {}),
        ("GET", f"{server.url}/api/images/{row_id}?size=64", {}),
        ("POST", f"{server.url}/api/search", {"json": {"id": row_id, "box": [0.1, 0.1, 0.9, 0.9], "k": 3}}),
        ("POST", f"{server.url}/api/search/batch",
         {"json": {"queries": [{"id": row_id, "box": [0, 0, 0.5, 0.5]}]}}),
    ]


def _error_of(r):
    body = r.json()
    if "results" in body:  # a batch: the one query's own error, with its status
        item = body["results"][0]
        return item["status"], item["error"]
    return r.status_code, body["error"]


@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_a_changed_file_is_409_file_changed_on_every_surface(server, engine, files, change):
    row_id = _id_of(engine, "p2.bmp")
    for method, url, kwargs in _requests(server, row_id):
        assert requests.request(method, url, timeout=30, **kwargs).status_code == 200, url  # as indexed
    change(files / "p2.bmp")
    for method, url, kwargs in _requests(server, row_id):
        r = requests.request(method, url, timeout=30, **kwargs)
        status, error = _error_of(r)
        assert status == 409, (url, r.text)
        assert error["code"] == "file_changed"
        assert "p2.bmp" in error["message"] and "changed since it was indexed" in error["message"]
        assert "re-index" in error["message"]
    with pytest.raises(ChangedFileError, match="changed since it was indexed"):
        engine.search_id(row_id, k=3, box=[0, 0, 1, 1])
    with pytest.raises(ChangedFileError):
        engine.thumbnail(row_id, 64)
    # the stored embedding is still the indexed picture's: a query by id without a box is answered
    r = requests.post(f"{server.url}/api/search", json={"id": row_id, "k": 3}, timeout=30)
    assert r.status_code == 200


def test_the_message_says_what_changed(engine, files):
    row_id = _id_of(engine, "p3.bmp")
    size = (files / "p3.bmp").stat().st_size
    _same_size_other_picture(files / "p3.bmp")
    with pytest.raises(ChangedFileError, match="sha256 differs"):
        read_indexed(engine, row_id)
    _other_size_picture(files / "p3.bmp")
    with pytest.raises(ChangedFileError, match=f"{size:,} when it was indexed"):
        read_indexed(engine, row_id)


def test_a_file_gone_is_404_image_unavailable(server, engine, files):
    row_id = _id_of(engine, "p4.bmp")
    (files / "p4.bmp").unlink()
    for method, url, kwargs in _requests(server, row_id):
        status, error = _error_of(requests.request(method, url, timeout=30, **kwargs))
        assert (status, error["code"]) == (404, "image_unavailable"), url
        assert "p4.bmp" in error["message"]


def test_a_file_only_touched_is_still_the_indexed_one(server, engine, files):
    row_id = _id_of(engine, "p5.bmp")
    later = time.time() + 3600
    os.utime(files / "p5.bmp", (later, later))
    for method, url, kwargs in _requests(server, row_id):
        assert requests.request(method, url, timeout=30, **kwargs).status_code == 200, url


def test_keypoint_checks_skip_a_changed_file_and_say_so(index, files, caplog):
    from imgsearch.search.duplicates.keypoints import KeypointMatcher

    from imgsearch.indexer.folder.features import FEATURES_FILE

    engine = SearchEngine.open(index[1])
    changed, kept = _id_of(engine, "p1.bmp"), _id_of(engine, "p0.bmp")
    stored = KeypointMatcher(engine).features(changed)  # indexing stored the features of the picture indexed
    _same_size_other_picture(files / "p1.bmp")
    matcher = KeypointMatcher(engine)
    assert np.array_equal(matcher.features(changed).descriptors, stored.descriptors) and matcher.changed == []
    (index[1] / FEATURES_FILE).unlink()  # an index made before features were stored: the files are read
    matcher = KeypointMatcher(engine)
    assert matcher.features(changed) is None and matcher.changed == [changed]
    assert matcher.features(kept) is not None
    found = matcher.evidence(kept, changed)
    assert found.check == "none" and found.match is None  # no evidence either way: the score decides
    assert "changed since it was indexed" in caplog.text
    engine.duplicates(threshold=0.5, keypoints=True)  # the whole run still answers


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edit_of_the_bytes_is_refused_and_a_touch_is_not(tmp_path_factory, data):
    """The rule, for any edit: a file whose bytes differ from those indexed is never returned as them."""
    import hashlib

    folder = tmp_path_factory.mktemp("edits")
    original = data.draw(st.binary(min_size=1, max_size=300), label="original")
    path = folder / "f.bin"
    path.write_bytes(original)
    stored = (hashlib.sha256(original).hexdigest(), len(original), int(path.stat().st_mtime))
    edit = data.draw(st.sampled_from(["flip", "append", "truncate", "replace", "touch"]), label="edit")
    new = bytearray(original)
    if edit == "flip":
        at = data.draw(st.integers(0, len(new) - 1))
        new[at] ^= data.draw(st.integers(1, 255))
    elif edit == "append":
        new += data.draw(st.binary(min_size=1, max_size=20))
    elif edit == "truncate":
        new = new[: data.draw(st.integers(0, len(new) - 1))]
    elif edit == "replace":
        new = bytearray(data.draw(st.binary(min_size=len(new), max_size=len(new)).filter(lambda b: b != original)))
    path.write_bytes(bytes(new))
    os.utime(path, (stored[2], stored[2]))  # the modification time as indexed: only the bytes can tell
    if edit == "touch":
        assert read_checked(str(path), *stored, name="image 0") == original
    else:
        with pytest.raises(ChangedFileError):
            read_checked(str(path), *stored, name="image 0")
    path.unlink()
    with pytest.raises(ImageUnavailableError) as gone:
        read_checked(str(path), *stored, name="image 0")
    assert not isinstance(gone.value, ChangedFileError)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stored_size", [True, False], ids=["size stored", "size unknown"])
def test_a_pipe_or_device_in_its_place_is_never_read(engine, files, stored_size):
    """Not even where the size is unknown (a shard of formats 1-3): a pipe would block, /dev/zero fill the memory."""
    import hashlib

    path = files / "p0.bmp"
    data = path.read_bytes()
    record = (hashlib.sha256(data).hexdigest(), len(data) if stored_size else None, None)
    path.unlink()
    try:
        for make, kind in ((lambda: os.mkfifo(path), "a named pipe"), (lambda: path.symlink_to("/dev/zero"),
                                                                       "a character device")):
            make()
            with pytest.raises(ImageUnavailableError, match=f"not a regular file \\({kind}\\)") as raised:
                read_checked(str(path), *record, name="image 0")
            assert not isinstance(raised.value, ChangedFileError)
            path.unlink()
    finally:
        path.unlink(missing_ok=True)
        path.write_bytes(data)
