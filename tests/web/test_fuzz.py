"""Property-based fuzzing with hypothesis, reproducible (derandomized, no example database).

The image decoder gets random bytes and real images of many formats with random bytes changed,
inserted, deleted or cut off: it returns a proper model input or raises ImageDecodeError, nothing
else.  /api/search and /api/classify, on real servers on loopback over real indexes, get random
multipart forms, JSON bodies and raw bodies: every answer is 200 or a JSON 4xx error, never a 500.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from imgsearch.indexer.inputs.images import ImageDecodeError, ImageTooLargeError, decode_image
from tests.bad_images import (
    animated_gif,
    encode,
    gif_declaring,
    png16_rgb,
    png_declaring,
)
from tests.pixel_model import DIM

# Pillow warns about the corrupt TIFF/EXIF tags it skips and about sizes over its guard (which the
# decoder refuses anyway), in this process and in the loopback servers' threads
pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin"),
              pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")]

FUZZ = dict(deadline=None, derandomize=True, database=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _seeds() -> tuple[list[bytes], list[bytes]]:
    """Small real images of every format and mode the decoder meets, to mutate; and the animated ones."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    # several frames: Pillow parses some of the later ones too, and downloads get cut short in them
    animated = [
        animated_gif([img.convert("P"), img.rotate(90).convert("P"), img.rotate(180).convert("P")]),
        encode(img, "PNG", save_all=True, append_images=[img.rotate(90)]),  # APNG
        encode(img, "WEBP", save_all=True, append_images=[img.rotate(90)]),
        encode(img, "TIFF", save_all=True, append_images=[img.rotate(90)]),
    ]
    return [
        *animated, encode(img, "PNG"), encode(img, "JPEG", quality=90, exif=exif), encode(img, "JPEG", progressive=True),
        encode(img.convert("CMYK"), "JPEG"), encode(img.convert("L"), "PNG"), encode(img, "PNG", exif=exif),
        encode(img.convert("P"), "PNG", transparency=0), encode(img.convert("RGBA"), "PNG"),
        encode(Image.fromarray(rng.integers(0, 65535, (20, 30), np.uint16)), "PNG"), png16_rgb(np.asarray(img)),
        encode(img, "TIFF"),
        encode(img, "TIFF", compression="tiff_lzw"), encode(img, "BMP"), encode(img, "WEBP"),
        encode(img, "WEBP", lossless=True, exif=exif), encode(img, "ICO"), encode(img, "PPM"), encode(img, "TGA"),
        png_declaring(3000, 2000), gif_declaring(5000, 5000),
    ], animated


SEEDS, ANIMATED = _seeds()


@st.composite
def mutated_images(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["set", "set", "insert", "delete"]))
        if action == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:at + draw(st.integers(1, 8))]
    if draw(st.booleans()):  # cut short, like an interrupted download
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


# an animation cut short anywhere, as an interrupted download leaves it
cut_animations = st.builds(lambda data, share: data[:round(len(data) * share)], st.sampled_from(ANIMATED),
                           st.floats(0, 1))
image_bytes = st.one_of(mutated_images(), cut_animations, st.sampled_from(SEEDS), st.binary(max_size=512))


@pytest.mark.timeout(120)
@settings(max_examples=1000, **FUZZ)
@given(data=image_bytes)
def test_decoder_raises_only_image_decode_error(data):
    limit = 4_000_000
    try:
        out = decode_image(data, 48, max_pixels=limit)
    except ImageTooLargeError as exc:
        assert str(exc).startswith("image too large")
        return
    except ImageDecodeError as exc:
        assert str(exc)  # a reason, one line
        return
    assert out.array.shape == (48, 48, 3) and out.array.dtype == np.uint8
    assert out.width >= 1 and out.height >= 1 and out.width * out.height <= limit


# ---------------------------------------------------------------- the API


TEXT = st.text(max_size=12)
WEIRD_VALUES = st.one_of(
    TEXT, st.integers(-3, 1_100).map(str),
    st.sampled_from(["", "-1", "0", "1001", "1e3", "2.5", "NaN", "Infinity", "nope", "../../etc/passwd", "\x00",
                     "9" * 5000]),
)


def _mostly(draw, good, bad, bad_share: int = 3):
    """Draw from ``good`` most of the time and from ``bad`` about one time in ``bad_share``."""
    return draw(bad if draw(st.integers(0, bad_share - 1)) == 0 else good)


@st.composite
def multipart_requests(draw) -> dict:
    """Mostly a plausible query (a file named 'image', sensible fields), with something off."""
    fields = {}
    for name, good in (("k", st.integers(1, 50).map(str)), ("head", st.just("cat")), ("top", st.integers(1, 5).map(str))):
        if draw(st.booleans()):
            fields[name] = _mostly(draw, good, WEIRD_VALUES)
    fields.update(draw(st.dictionaries(TEXT, WEIRD_VALUES, max_size=2)))
    files = None
    if draw(st.integers(0, 7)):
        name = _mostly(draw, st.just("image"), TEXT, bad_share=8)
        files = {name: (_mostly(draw, st.just("q.png"), TEXT), _mostly(draw, st.sampled_from(SEEDS), image_bytes, 2))}
    return {"data": fields, "files": files}


def _vector(seed: int, spoil: str):
    v = np.random.default_rng(seed).normal(size=DIM).tolist()
    spoils = {"nan": math.nan, "inf": -math.inf, "huge_int": 10 ** 400, "big_float": 1e39, "string": "1.0",
              "null": None, "bool": True, "list": [1.0]}
    if spoil == "short":
        return v[: seed % DIM]
    if spoil == "long":
        return v + [0.0]
    if spoil == "zero":
        return [0] * DIM
    if spoil in spoils:
        v[seed % DIM] = spoils[spoil]
    return v


JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(10 ** 30), 10 ** 30), st.floats(), TEXT)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)
GOOD_VECTORS = st.builds(_vector, st.integers(0, 2 ** 32 - 1), st.just(""))
BAD_VECTORS = st.builds(_vector, st.integers(0, 2 ** 32 - 1),
                        st.sampled_from(["nan", "inf", "huge_int", "big_float", "string", "null", "bool", "list",
                                         "short", "long", "zero"]))


@st.composite
def json_bodies(draw):
    """Mostly a plausible query by id or by vector, with something off; sometimes any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_VALUES)
    body = {}
    if draw(st.booleans()):
        body["id"] = _mostly(draw, st.integers(0, 80), st.one_of(st.integers(), JSON_VALUES))
    else:
        body["vector"] = _mostly(draw, GOOD_VECTORS, st.one_of(BAD_VECTORS, JSON_VALUES))
    for name, good in (("k", st.integers(1, 50)), ("head", st.just("cat")), ("top", st.integers(1, 5))):
        if draw(st.booleans()):
            body[name] = _mostly(draw, good, st.one_of(st.integers(-2, 1_002), JSON_VALUES,
                                                        st.sampled_from(["", "nope", "../heads/cat"])))
    return body


@st.composite
def json_requests(draw) -> dict:
    text = json.dumps(draw(json_bodies()))  # NaN and Infinity as Python writes them, which Flask reads
    content_type = _mostly(draw, st.just("application/json"),
                           st.sampled_from(["application/json; charset=utf-8", "application/problem+json",
                                            "text/plain"]))
    return {"data": text.encode(), "headers": {"Content-Type": content_type}}


@st.composite
def raw_requests(draw) -> dict:
    content_type = draw(st.sampled_from([
        "application/json", "multipart/form-data", "multipart/form-data; boundary=xyz",
        "multipart/form-data; boundary=", "application/x-www-form-urlencoded", "image/jpeg", "",
    ]))
    if draw(st.booleans()):  # a multipart body, maybe cut short
        part = draw(image_bytes)
        body = (b"--xyz\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\r\n"
                + part + b"\r\n--xyz--\r\n")
        body = body[:draw(st.integers(0, len(body)))] if draw(st.booleans()) else body
    else:
        body = draw(st.binary(max_size=1024))
    return {"data": body, "headers": {"Content-Type": content_type}}


@st.composite
def api_requests(draw) -> dict:
    kind = draw(st.sampled_from(["multipart", "multipart", "json", "json", "raw"]))
    return draw({"multipart": multipart_requests(), "json": json_requests(), "raw": raw_requests()}[kind])


def _check(response, endpoint: str) -> None:
    assert response.status_code in (200, 400, 404, 413), (response.status_code, response.text[:300])
    assert "Traceback" not in response.text
    body = response.json()
    if response.status_code != 200:
        error = body["error"]
        assert set(error) == {"code", "message"} and isinstance(error["code"], str) and error["message"]
    elif endpoint == "search":
        assert len(body["results"]) <= 1000
        for hit in body["results"]:
            assert isinstance(hit["id"], int) and math.isfinite(hit["score"])
    else:
        probabilities = [p["probability"] for p in body["predictions"]]
        assert probabilities and all(0 <= p <= 1 for p in probabilities) and sum(probabilities) <= 1 + 1e-5


@pytest.mark.timeout(120)
@settings(max_examples=200, **FUZZ)
@given(request=api_requests())
def test_search_endpoint_fuzz_on_loopback(live_server, request):
    _check(requests.post(live_server.url + "/api/search", timeout=60, **request), "search")


@pytest.mark.timeout(120)
@settings(max_examples=200, **FUZZ)
@given(request=api_requests())
def test_classify_endpoint_fuzz_on_loopback(headed_server, request):
    _check(requests.post(headed_server.url + "/api/classify", timeout=60, **request), "classify")


@pytest.fixture(scope="module")
def headed_client(headed_server):
    """The Flask test client of the headed server's app: no sockets, so many more examples per second."""
    return headed_server.app.test_client()


@pytest.mark.timeout(120)
@settings(max_examples=500, **FUZZ)
@given(request=st.one_of(json_requests(), raw_requests()), endpoint=st.sampled_from(["search", "classify"]))
def test_json_and_raw_bodies_fuzz_in_process(headed_client, request, endpoint):
    r = headed_client.post(f"/api/{endpoint}", data=request["data"], headers=request["headers"])
    assert r.status_code in (200, 400, 404, 413), (r.status_code, r.get_data(as_text=True)[:300])
    body = r.get_json()
    assert body is not None and ("error" in body) == (r.status_code != 200)


@pytest.mark.timeout(30)
def test_servers_are_still_healthy_after_the_fuzzing(live_server, headed_server):
    for server in (live_server, headed_server):
        assert requests.get(server.url + "/api/health", timeout=10).json()["status"] == "ok"
