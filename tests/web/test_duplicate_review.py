"""Reviewing duplicates over HTTP (web/review_api.py) through the client and raw requests: marks made, listed,
respected by the next GET /api/duplicates and unmarked; a group's other members removed from the index (the
files stay) and the new version served at once; bad ids get 400 with what to change; a read key gets 403 on
every write when keys are required. (The page: tests/browser/test_review_page.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests

from imgsearch.search.client.http_client import SearchAPIError, SearchClient
from imgsearch.web.keys import KeyStore
from tests.helpers import LiveServer
from tests.pixel_model import DUP_THRESHOLD


def _served(index_dir, **settings):
    from imgsearch.web import create_app

    return LiveServer(create_app({"INDEX_DIR": str(index_dir), "RELOAD_INTERVAL": 0, "WARM_UP": False,
                                  **settings}))


@pytest.fixture
def served(dup_index, tmp_path):
    index_dir = tmp_path / "idx"
    shutil.copytree(dup_index[0], index_dir)
    server = _served(index_dir)
    with SearchClient(server.url, timeout=120) as client:
        yield server, client, index_dir
    server.close()


def _near(client) -> list:
    return [g for g in client.duplicates(threshold=DUP_THRESHOLD, keypoints=False, limit=100) if not g.exact]


def test_marks_are_made_listed_respected_and_unmarked(served):
    server, client, _ = served
    before = _near(client)
    pair = before[0].ids
    answer = client.mark_not_duplicates(pair)
    assert (answer["pairs"], answer["changed"], answer["total"]) == (1, 1, 1)
    assert pair not in [g.ids for g in _near(client)] and len(_near(client)) == len(before) - 1
    [mark] = client.duplicate_marks()
    assert sorted(mark["ids"]) == sorted(pair) and len(mark["paths"]) == 2
    body = requests.get(server.url + "/api/duplicates/marks", timeout=30).json()
    assert body["writing"]["allowed"] is True and body["total"] == 1  # loopback: anyone may write
    assert client.unmark_not_duplicates(pair)["changed"] == 1
    assert [g.ids for g in _near(client)] == [g.ids for g in before] and client.duplicate_marks() == []


@pytest.mark.parametrize("method, body, code, words", [
    ("post", {"ids": [3]}, "invalid_ids", "two different ids"),
    ("post", {"ids": [3, 3]}, "invalid_ids", "two different ids"),
    ("post", {"ids": [0, 99999]}, "unknown_id", "no image with id 99999"),
    ("post", {"ids": ["a", 1]}, "invalid_id", "ids must be an integer"),
    ("post", {"ids": [1.5, 1]}, "invalid_id", "ids must be an integer"),
    ("post", {"ids": list(range(201))}, "too_many_ids", "at most 200"),
    ("post", {"ids": "3,4"}, "invalid_ids", "must be a list of ids"),
    ("post", {"ids": [True, 1]}, "invalid_id", "ids must be an integer"),
    ("post", {"ids": ["3", 1]}, "invalid_id", "ids must be an integer"),
    ("post", {"ids": [None, 1]}, "invalid_id", "ids must be an integer"),
    ("post", {"ids": [[0], 1]}, "invalid_id", "ids must be an integer"),
    ("post", {"ids": [2**64, 1]}, "invalid_json", "beyond 64 bits"),
    ("post", {"ids": [1e300, 1]}, "invalid_id", "ids must be an integer"),
    ("post", {}, "invalid_ids", "must be a list of ids"),
    ("post", [3, 4], "invalid_json", "a JSON object"),
    ("delete", {"ids": [3]}, "invalid_ids", "two different ids"),
    ("remove", {"keep": 0, "remove": [0, 1]}, "keeper_removed", "id 0 is the one kept"),
    ("remove", {"keep": 0, "remove": []}, "invalid_ids", "remove lists the ids"),
    ("remove", {"keep": 0, "remove": [99999]}, "unknown_id", "no image with id 99999"),
    ("remove", {"remove": [1]}, "invalid_id", "keep"),
    ("remove", {"keep": 0, "remove": [1], "also": 2}, "invalid_field", "unknown field 'also'"),
])
def test_bad_requests_get_400_with_what_to_change(served, method, body, code, words):
    server, client, index_dir = served
    path = "/api/duplicates/remove" if method == "remove" else "/api/duplicates/marks"
    r = requests.request("POST" if method == "remove" else method.upper(), server.url + path, json=body, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["code"] == code, r.text
    assert words in r.json()["error"]["message"]
    assert not (index_dir / "duplicate-marks.json").exists() and client.info()["generation"] == 1


def test_exact_copies_are_one_id_and_cannot_be_marked(served):
    _, client, _ = served
    exact = next(g for g in client.duplicates(threshold=DUP_THRESHOLD, keypoints=False, limit=100) if g.exact)
    with pytest.raises(SearchAPIError) as info:
        client.mark_not_duplicates(exact.ids)
    assert info.value.status == 400 and "two different ids" in info.value.message


def test_removing_the_others_of_a_group_serves_the_new_version_at_once(served):
    _, client, index_dir = served
    group = _near(client)[0]
    count, generation = client.info()["count"], client.info()["generation"]
    answer = client.remove_duplicates(group.keep, group.ids[1:])
    assert answer["removed"] == group.ids[1:] and answer["count"] == count - len(group.ids) + 1
    assert answer["generation"] > generation == 1
    assert group.ids not in [g.ids for g in _near(client)]  # the group is gone from the very next answer
    assert client.info()["count"] == answer["count"]
    for row_id in group.ids[1:]:
        with pytest.raises(SearchAPIError) as info:
            client.image(row_id)
        assert info.value.status == 404
    assert all(Path(p).is_file() for p in group.paths)  # the files stay on disk


@pytest.fixture(scope="module")
def keyed(dup_index, tmp_path_factory):
    index_dir = tmp_path_factory.mktemp("keyed-review") / "idx"
    shutil.copytree(dup_index[0], index_dir)
    store = KeyStore(tmp_path_factory.mktemp("review-keys") / "keys.json")
    read, _ = store.create("read", "reader")
    write, _ = store.create("write", "writer")
    server = _served(index_dir, REQUIRE_KEY=True, KEYS_FILE=str(store.path))
    yield server, read, write, index_dir
    server.close()


def test_a_read_key_cannot_mark_or_remove(keyed):
    server, read, write, index_dir = keyed
    with SearchClient(server.url, api_key=read, timeout=60) as reader:
        group = _near(reader)[0]
        assert reader.duplicate_marks() == []  # reading is allowed
        for call in (lambda: reader.mark_not_duplicates(group.ids), lambda: reader.unmark_not_duplicates(group.ids),
                     lambda: reader.remove_duplicates(group.keep, group.ids[1:])):
            with pytest.raises(SearchAPIError) as info:
                call()
            assert info.value.status == 403 and info.value.code == "write_scope_required"
            assert "write key" in info.value.message
        body = requests.get(server.url + "/api/duplicates/marks", headers={"Authorization": f"Bearer {read}"},
                            timeout=30).json()
        assert body["writing"]["allowed"] is False
    assert not (index_dir / "duplicate-marks.json").exists()
    with SearchClient(server.url, api_key=write, timeout=120) as writer:
        assert writer.mark_not_duplicates(group.ids)["changed"] == 1
        assert writer.remove_duplicates(group.keep, group.ids[1:])["removed"] == group.ids[1:]


def test_the_openapi_document_describes_the_review(served):
    server, _, _ = served
    paths = requests.get(server.url + "/api/openapi.json", timeout=30).json()["paths"]
    marks, remove = paths["/api/duplicates/marks"], paths["/api/duplicates/remove"]["post"]
    assert set(marks) == {"get", "post", "delete"}
    for op in (marks["post"], marks["delete"], remove):
        assert {"200", "400", "401", "403", "409"} <= set(op["responses"])
        assert op["requestBody"]["required"] is True
    assert remove["requestBody"]["content"]["application/json"]["schema"]["required"] == ["keep", "remove"]


def test_another_writer_at_work_is_409_and_nothing_changes(served):
    import subprocess
    import sys

    from imgsearch.indexer.folder.verify import verify_index

    server, client, index_dir = served
    group = _near(client)[0]
    holder = subprocess.Popen(  # another process writing the folder (an indexing run, say)
        [sys.executable, "-c", "import sys, time; from imgsearch.indexer.folder.lock import writer_lock\n"
                               f"with writer_lock({str(index_dir)!r}):\n print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for call in (lambda: client.mark_not_duplicates(group.ids),
                     lambda: client.remove_duplicates(group.keep, group.ids[1:])):
            with pytest.raises(SearchAPIError) as info:
                call()
            assert info.value.status == 409 and info.value.code == "index_busy", info.value
    finally:
        holder.kill()
        holder.wait()
    assert client.duplicate_marks() == [] and client.info()["generation"] == 1
    client.mark_not_duplicates(group.ids)  # once it is done, the mark is made; the folder still verifies
    assert verify_index(index_dir).ok
