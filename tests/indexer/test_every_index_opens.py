"""Every index opens and verifies (issue 30, item 9): an empty index and an index of vectors made elsewhere
(``index-vectors``, no model) work on every surface or answer clearly, never with a traceback or a 500.

- empty (every image removed, or nothing found): ``verify``, ``verify --repair``, ``info``, ``search``,
  ``create_app`` and the JSON API;
- vectors made elsewhere: ``create_app()`` with its defaults (it warms the model up) and ``imgsearch serve``
  start; search by vector and by id work; image and explain queries get a 400 ``image_queries_unsupported``.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from imgsearch.indexer.config import IndexConfig
from imgsearch.indexer.folder.verify import verify_index
from imgsearch.indexer.run.index_vectors import index_vectors
from imgsearch.indexer.run.pipeline import index_images
from imgsearch.indexer.run.remove import remove_images
from imgsearch.search.engine import SearchEngine
from imgsearch.search.errors import UnknownIdError
from imgsearch.web.app import create_app
from imgsearch.web.cli import main
from tests.helpers import LiveServer
from tests.pixel_model import NAME

DIM = 16
CONFIG = IndexConfig(progress=False)


def _vectors_index(tmp_path, n: int = 12):
    v = np.random.default_rng(0).normal(size=(n, DIM))
    pq.write_table(pa.table({"path": [f"/x/{i}.jpg" for i in range(n)], "embedding": [list(r) for r in v]}),
                   tmp_path / "v.parquet")
    index_vectors(tmp_path / "v.parquet", tmp_path / "idx", CONFIG, model="m")
    return tmp_path / "idx", v


def _emptied(tmp_path):
    index_dir, _ = _vectors_index(tmp_path)
    remove_images(index_dir, list(range(12)))
    return index_dir


def _empty_folder_index(tmp_path):
    (tmp_path / "nothing").mkdir()
    index_images([tmp_path / "nothing"], tmp_path / "idx", IndexConfig(progress=False, backbone=NAME))
    return tmp_path / "idx"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("make", [_emptied, _empty_folder_index], ids=["emptied", "nothing-found"])
def test_an_empty_index_verifies_repairs_and_answers(tmp_path, make):
    index_dir = make(tmp_path)
    assert verify_index(index_dir).ok
    for args in (["verify"], ["verify", "--repair"], ["verify", "--json"], ["info"]):
        r = cli(*args, "--index", index_dir)
        assert r.exit_code == 0 and r.exception is None, (args, r.output)
        assert "Traceback" not in r.output
    assert ": 0 images" in cli("verify", "--repair", "--index", index_dir).output
    r = cli("search", "--index", index_dir, "--like", "3")
    assert r.exit_code == 1 and "no image with id 3" in r.output and "Traceback" not in r.output

    engine = SearchEngine.open(index_dir)
    assert len(engine) == 0
    with pytest.raises(UnknownIdError):
        engine.search_id(0)
    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), "WARM_UP": False}))
    try:
        assert requests.get(f"{server.url}/api/info", timeout=30).status_code == 200
        r = requests.post(f"{server.url}/api/search", json={"id": 0}, timeout=30)
        assert r.status_code == 404 and r.json()["error"]["code"], r.text
        r = requests.post(f"{server.url}/api/search", json={"vector": [1.0] * engine.dim}, timeout=30)
        assert r.status_code == 200 and r.json()["results"] == [], r.text
    finally:
        server.close()


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def test_an_index_of_vectors_serves_with_the_factory_defaults(tmp_path):
    index_dir, v = _vectors_index(tmp_path)
    app = create_app({"INDEX_DIR": str(index_dir)})  # WARM_UP on, as 'imgsearch serve' runs it
    server = LiveServer(app)
    try:
        r = requests.post(f"{server.url}/api/search", json={"vector": [float(x) for x in v[4]], "k": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["id"] == 4, r.text
        r = requests.post(f"{server.url}/api/search", json={"id": 4, "k": 2}, timeout=30)
        assert r.status_code == 200 and 4 not in [h["id"] for h in r.json()["results"]], r.text
        for how in [dict(json={"query": {"id": 1}, "id": 2}),
                    dict(files={"image": ("q.jpg", _jpeg())}, data={"id": "2"})]:
            r = requests.post(f"{server.url}/api/explain", timeout=30, **how)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "image_queries_unsupported" and "by vector" in r.text
        r = requests.post(f"{server.url}/api/search", files={"image": ("q.jpg", _jpeg())}, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "image_queries_unsupported"
        assert requests.get(f"{server.url}/", timeout=30).status_code == 200
    finally:
        server.close()


def test_explain_on_an_index_of_vectors_is_refused_in_python_and_on_the_command_line(tmp_path):
    index_dir, _ = _vectors_index(tmp_path)
    from imgsearch.search.errors import ExternalVectorsError

    with pytest.raises(ExternalVectorsError, match="query it by vector"):
        SearchEngine.open(index_dir).explain(1, 2)
    r = cli("explain", "--index", index_dir, "1", "2")
    assert r.exit_code == 1 and "query it by vector" in r.output and "Traceback" not in r.output, r.output
