"""Duplicates over HTTP: GET /api/duplicates through the client and raw requests, its cache across a hot
version swap (the page's Duplicates view: tests/browser/test_duplicates_page.py)."""

from __future__ import annotations

import shutil

import pytest
import requests

from imgsearch.indexer.run.remove import remove_images
from imgsearch.search.client.http_client import SearchClient
from imgsearch.search.engine import SearchEngine
from tests.helpers import LiveServer, wait_until
from tests.pixel_model import DUP_THRESHOLD

THRESHOLD = DUP_THRESHOLD  # 4 photos and their edits, 2 exact copies: 6 groups (tests/search/test_duplicates_index.py)


@pytest.fixture(scope="module")
def served(dup_index, tmp_path_factory):
    """A copy of the duplicates index served on loopback, following new versions at once."""
    from imgsearch.web import create_app

    index_dir = tmp_path_factory.mktemp("served-dups") / "idx"
    shutil.copytree(dup_index[0], index_dir)
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "RELOAD_INTERVAL": 0, "WARM_UP": False}))
    yield server, index_dir
    server.close()


@pytest.fixture(scope="module")
def client(served):
    with SearchClient(served[0].url, timeout=60) as c:
        yield c


def test_pages_of_groups_as_the_engine_finds_them(client, served):
    expected = SearchEngine.open(served[1]).duplicates(THRESHOLD)
    first = client.duplicates(threshold=THRESHOLD, limit=4)
    rest = client.duplicates(threshold=THRESHOLD, offset=4, limit=4)
    assert (first.total, len(first), len(rest), first.threshold, first.keep) == (6, 4, 2, THRESHOLD, "largest")
    got = [(g.group, g.ids, g.scores, g.keep, g.exact) for g in [*first, *rest]]
    assert got == [(g.group, g.ids, g.scores, g.keep, g.exact) for g in expected.groups]
    # each member's evidence reaches the client as the engine gives it (what decided, the check's numbers)
    assert [g.evidence for g in [*first, *rest]] == [g.evidence for g in expected.groups]
    assert all(len(g.evidence) == len(g.ids) and g.evidence[0]["decided_by"] == "keeper" for g in first)
    assert [p.rsplit("/", 1)[-1] for p in first[0].paths] == [p.rsplit("/", 1)[-1] for p in expected.groups[0].paths]
    r = requests.get(served[0].url + first[0].thumbnail_urls[1], timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert client.duplicates(threshold=THRESHOLD, keep="smallest").keep == "smallest"
    assert client.duplicates().threshold == pytest.approx(0.9, abs=0.1)  # the server's default
    spec = requests.get(served[0].url + "/api/openapi.json", timeout=30).json()
    assert "DuplicatesResponse" in spec["components"]["schemas"]
    assert {p["name"] for p in spec["paths"]["/api/duplicates"]["get"]["parameters"]} == {
        "threshold", "keep", "keypoints", "offset", "limit"}


@pytest.mark.parametrize("query, code, message", [
    ("threshold=0", "invalid_threshold", "threshold must be a number above 0 and at most 1"),
    ("threshold=1.01", "invalid_threshold", "threshold must be a number above 0 and at most 1"),
    ("threshold=nan", "invalid_threshold", "got 'nan'"),
    ("threshold=high", "invalid_threshold", "got 'high'"),
    ("keep=biggest", "invalid_keep", "keep must be one of largest, smallest, oldest, newest"),
    ("offset=-1", "invalid_offset", "offset must be an integer between 0"),
    ("limit=0", "invalid_limit", "limit must be an integer between 1 and 1000"),
    ("limit=1001", "invalid_limit", "limit must be an integer between 1 and 1000"),
    ("keypoints=maybe", "invalid_keypoints", "keypoints must be true or false, got 'maybe'"),
])
def test_bad_parameters_get_400_with_the_reason(served, query, code, message):
    r = requests.get(f"{served[0].url}/api/duplicates?{query}", timeout=30)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == code and message in r.json()["error"]["message"]


def test_a_new_version_is_not_answered_from_the_old_cache(client, served):
    before = client.duplicates(threshold=THRESHOLD, limit=100)
    assert before.total == 6
    near = next(g for g in before if not g.exact)
    remove_images(served[1], [near.ids[1]])  # its group is gone from the version this publishes
    after = wait_until(lambda: (p := client.duplicates(threshold=THRESHOLD, limit=100)).generation
                       > before.generation and p, what="the new version's groups")
    assert after.total == 5 and near.keep not in [g.keep for g in after if not g.exact]
