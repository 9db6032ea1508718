"""Region queries (``box``): cropped in the displayed orientation at full resolution, then embedded;
through the engine, a real server, the client and the command line, and every bad box refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image, ImageOps

from imgsearch.search.client.http_client import SearchAPIError
from imgsearch.search.errors import ImageTooLargeError, InvalidBoxError
from imgsearch.search.query.regions import crop_region, parse_box, pixel_box
from tests.helpers import fake_model_env

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")
LEFT, RIGHT = [0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]


@pytest.fixture(scope="module")
def composite(tmp_path_factory, photos_dir) -> Path:
    """The astronaut on the left half and the retina on the right, 1024 x 512, as PNG."""
    canvas = Image.new("RGB", (1024, 512))
    for x, name in ((0, "astronaut"), (512, "retina")):
        with Image.open(photos_dir / f"{name}.jpg") as im:
            canvas.paste(im.convert("RGB").resize((512, 512)), (x, 0))
    path = tmp_path_factory.mktemp("regions") / "composite.png"
    canvas.save(path)
    return path


@pytest.mark.parametrize("raw, expected", [
    ([0, 0, 1, 1], (0.0, 0.0, 1.0, 1.0)),
    ("0.25,0.5,0.75,1", (0.25, 0.5, 0.75, 1.0)),
    ("[0.1, 0.2, 0.3, 0.4]", (0.1, 0.2, 0.3, 0.4)),
    ((0.5, 0, 1, 1.0), (0.5, 0.0, 1.0, 1.0)),
])
def test_boxes_parse(raw, expected):
    assert parse_box(raw) == expected


@pytest.mark.parametrize("raw, message", [
    ([0, 0, 1.5, 1], "outside the image"),
    ([-0.1, 0, 1, 1], "outside the image"),
    ([0.5, 0, 0.5, 1], "no area"),
    ([0.6, 0, 0.4, 1], "no area"),
    ([0, 0, 1], "x0, y0, x1, y1"),
    ("abc", "x0, y0, x1, y1"),
    ("a,b,c,d", "four numbers"),
    ([True, 0, 1, 1], "four numbers"),
    ([0, 0, float("nan"), 1], "finite"),
    (None, "x0, y0, x1, y1"),
    ({"x0": 0}, "x0, y0, x1, y1"),
])
def test_bad_boxes_say_what_is_wrong(raw, message):
    with pytest.raises(InvalidBoxError) as info:
        parse_box(raw)
    assert message in str(info.value)


def test_pixel_boxes_cover_every_touched_pixel_and_at_least_one():
    assert pixel_box((0.0, 0.0, 0.5, 1.0), 1024, 512) == (0, 0, 512, 512)
    assert pixel_box((0.1001, 0.0, 0.2, 0.5), 10, 3) == (1, 0, 2, 2)
    assert pixel_box((0.5, 0.5, 0.5000001, 0.5000001), 100, 100) == (50, 50, 51, 51)
    assert pixel_box((0.99999, 0.99999, 1.0, 1.0), 7, 5) == (6, 4, 7, 5)


def test_the_box_is_read_in_the_displayed_orientation(tmp_path):
    # stored 60 x 40 in four coloured quadrants, with EXIF orientation 6: viewers show it rotated, 40 x 60
    stored = Image.new("RGB", (60, 40))
    for (x, y), colour in {(0, 0): (255, 0, 0), (30, 0): (0, 255, 0), (0, 20): (0, 0, 255),
                           (30, 20): (255, 255, 0)}.items():
        stored.paste(colour, (x, y, x + 30, y + 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif)
    with Image.open(path) as im:
        shown = ImageOps.exif_transpose(im)  # what a viewer shows, 40 x 60
    assert shown.size == (40, 60)
    top_left = [0, 0, 0.5, 0.5]
    region = crop_region(path, top_left, max_pixels=10_000)
    assert region.size == (20, 30)
    expected = np.asarray(shown.crop((0, 0, 20, 30)), dtype=float).mean(axis=(0, 1))
    unrotated = np.asarray(stored.crop((0, 0, 30, 20)), dtype=float).mean(axis=(0, 1))
    got = np.asarray(region, dtype=float).mean(axis=(0, 1))
    assert np.abs(got - expected).max() < 12 and np.abs(got - unrotated).max() > 100


def test_the_region_is_cropped_at_full_resolution(tmp_path):
    # a JPEG query is otherwise decoded at reduced scale (1/8 here): the region keeps its full detail
    big = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1600, 2400, 3), dtype=np.uint8))
    path = tmp_path / "big.jpg"
    big.save(path, quality=90)
    region = crop_region(path, [0.0, 0.0, 0.1, 0.1], max_pixels=4_000_000)
    assert region.size == (240, 160)
    with pytest.raises(ImageTooLargeError, match="image too large"):
        crop_region(path, [0.0, 0.0, 0.1, 0.1], max_pixels=3_000_000)  # the pixel limit holds for regions too


def test_engine_embeds_the_region_before_the_models_resize(engine, composite):
    with Image.open(composite) as im:
        left = im.convert("RGB").crop((0, 0, 512, 512))
    by_box = engine.embed_images([composite], box=LEFT)
    assert np.array_equal(by_box, engine.embed_images([left]))
    assert not np.allclose(by_box, engine.embed_images([composite]), atol=1e-2)
    assert engine.search_image(composite, 1, box=LEFT)[0].path.endswith("astronaut.jpg")
    assert engine.search_image(composite, 1, box=RIGHT)[0].path.endswith("retina.jpg")


def _id_of(engine, name: str) -> int:
    return next(int(i) for i in engine.ids if engine.get(int(i)).path.endswith(name))


def test_engine_box_of_an_indexed_id_reads_its_file(engine):
    rocket = _id_of(engine, "photos/rocket.jpg")
    assert rocket not in [h.id for h in engine.search_id(rocket, 5)]  # plain "more like this" leaves it out
    whole = engine.search_id(rocket, 5, box=[0, 0, 1, 1])
    assert whole[0].id == rocket and whole[0].score > 0.95  # a region is a new query: the image itself counts
    part = engine.search_id(rocket, 5, box=[0.3, 0.0, 0.7, 0.5])
    assert part[0].score < whole[0].score


def _post(url, **kw):
    return requests.post(url + "/api/search", timeout=60, **kw)


def test_box_through_a_real_server(live_server, engine, composite, client):
    data = composite.read_bytes()
    for box, name in ((LEFT, "astronaut.jpg"), (RIGHT, "retina.jpg")):
        r = _post(live_server.url, files={"image": ("composite.png", data)}, data={"box": ",".join(map(str, box)),
                                                                                  "k": "3"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"][0]["path"].endswith(name)
        assert body["query"] == {"type": "image", "filename": "composite.png", "box": box}
        assert [h.id for h in client.search(composite, k=3, box=box)] == [h["id"] for h in body["results"]]
    rocket = _id_of(engine, "photos/rocket.jpg")
    box = [0.3, 0.0, 0.7, 0.5]
    r = _post(live_server.url, json={"id": rocket, "k": 4, "box": box})
    assert r.status_code == 200, r.text
    expected = [h.id for h in engine.search_id(rocket, 4, box=box)]
    assert [h["id"] for h in r.json()["results"]] == expected
    assert [h.id for h in client.search_id(rocket, k=4, box=box)] == expected


@pytest.mark.parametrize("box, message", [
    ([0, 0, 1.2, 1], "outside the image"),
    ([0.2, 0.2, 0.2, 0.9], "no area"),
    ([0, 0, 1], "x0, y0, x1, y1"),
    ("0,0,1,1", None),  # JSON takes the form field's spelling too
    ({"left": 0}, "x0, y0, x1, y1"),
    (["a", 0, 1, 1], "four numbers"),
])
def test_bad_boxes_through_a_real_server_are_400(live_server, composite, box, message):
    r = _post(live_server.url, json={"id": 0, "k": 2, "box": box})
    if message is None:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_box" and message in r.json()["error"]["message"]
    form = box if isinstance(box, str) else ",".join(map(str, box)) if isinstance(box, list) else "left"
    r = _post(live_server.url, files={"image": ("c.png", composite.read_bytes())}, data={"box": form})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_box", r.text


def test_a_box_with_a_vector_or_an_unknown_id_is_refused(live_server, engine, client):
    r = _post(live_server.url, json={"vector": engine.vector(0).tolist(), "box": [0, 0, 1, 1]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_box"
    assert "not a vector" in r.json()["error"]["message"]
    with pytest.raises(SearchAPIError) as info:
        client.search_id(10 ** 6, box=[0, 0, 1, 1])
    assert info.value.status == 404 and info.value.code == "not_found"


def test_the_cli_searches_by_a_region_and_refuses_a_bad_box(built_index, composite):
    index_dir = str(built_index[0])
    out = subprocess.run([IMGSEARCH, "search", "--index", index_dir, "--box", "0.5,0,1,1", "-k", "2", "--json",
                          str(composite)], capture_output=True, text=True, timeout=300, env=fake_model_env())
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"][0]["path"].endswith("retina.jpg")
    bad = subprocess.run([IMGSEARCH, "search", "--index", index_dir, "--box", "0,0,0,1", str(composite)],
                         capture_output=True, text=True, timeout=120, env=fake_model_env())
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: box ") and "no area" in bad.stderr


def test_openapi_describes_box(live_server):
    spec = requests.get(live_server.url + "/api/openapi.json", timeout=10).json()
    body = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]
    assert "box" in body["multipart/form-data"]["schema"]["properties"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/SearchQuery"}
    query = spec["components"]["schemas"]["SearchQuery"]
    assert query["properties"]["box"]["minItems"] == 4 and "url" in query["properties"]



def test_box_and_url_combine_with_the_other_query_forms(live_server):
    """A box goes with one image (not with several examples); in a batch, a box query is answered and a
    URL query on a server without URL queries gets its 403 in its place."""
    api = live_server.url + "/api/search"
    r = requests.post(api, json={"positive": [{"id": 0}, {"id": 1}], "box": [0, 0, 0.5, 0.5]}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_box"
    whole = requests.post(api, json={"id": 0, "k": 5, "box": [0, 0, 0.6, 0.6]}, timeout=30).json()["results"]
    paged = requests.post(api, json={"id": 0, "k": 2, "offset": 2, "box": [0, 0, 0.6, 0.6]}, timeout=30)
    assert paged.status_code == 200 and [h["id"] for h in paged.json()["results"]] == [h["id"] for h in whole[2:4]]
    r = requests.post(api + "/batch", json={"queries": [{"id": 0, "k": 3, "box": [0.1, 0.1, 0.9, 0.9]},
                                                        {"url": "http://example.org/a.jpg"},
                                                        {"id": 0, "box": [0.5, 0.5, 0.5, 0.9]}]}, timeout=30)
    assert r.status_code == 200
    first, refused, bad_box = r.json()["results"]
    assert len(first) == 3
    assert refused["status"] == 403 and refused["error"]["code"] == "url_queries_disabled"
    assert bad_box["status"] == 400 and bad_box["error"]["code"] == "invalid_box"
