"""HEIC/HEIF (pillow-heif) and AVIF (Pillow's own plugin) images index and answer like JPEG: listed by their
extensions, decoded the right way up with their EXIF orientation, refused over the pixel limit before a pixel
is decoded, and found by a query of the same picture as JPEG."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from imgsearch.indexer.inputs.images import ImageTooLargeError, load_rgb
from imgsearch.indexer.inputs.sources import iter_image_files

FORMATS = {"heic": "HEIF", "heif": "HEIF", "avif": "AVIF"}


def _photo() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut()).resize((240, 160))  # wider than high


def _encoded(img: Image.Image, fmt: str, orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    img.save(out, fmt, quality=90, exif=exif.tobytes())
    return out.getvalue()


@pytest.mark.parametrize("suffix", FORMATS)
def test_a_photo_decodes_like_its_png_the_right_way_up(suffix):
    photo = _photo()
    upright, width, height = load_rgb(_encoded(photo, FORMATS[suffix]))
    assert (width, height) == (240, 160) and upright.mode == "RGB"
    assert np.abs(np.asarray(upright, float) - np.asarray(photo, float)).mean() < 6  # lossy, but the picture
    # stored turned, with orientation 6 (rotate 90 clockwise to display), as a phone writes a portrait photo
    turned = photo.transpose(Image.Transpose.ROTATE_90)  # what the sensor saw: 160 x 240
    shown, width, height = load_rgb(_encoded(turned, FORMATS[suffix], orientation=6))
    assert (width, height) == shown.size == (240, 160)
    assert np.abs(np.asarray(shown, float) - np.asarray(photo, float)).mean() < 6


@pytest.mark.parametrize("suffix", FORMATS)
def test_the_pixel_limit_is_honoured_before_decoding(suffix):
    data = _encoded(_photo(), FORMATS[suffix])
    with pytest.raises(ImageTooLargeError):
        load_rgb(data, max_pixels=240 * 160 - 1)


def test_heic_and_avif_are_indexed_and_found_by_the_same_picture_as_jpeg(tmp_path):
    """Through the console script in a fresh process (nothing else there registers a HEIF opener for it):
    ``imgsearch index`` lists and indexes them, ``imgsearch search`` finds each by its JPEG."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tests.helpers import fake_model_env
    from tests.pixel_model import NAME

    imgsearch = str(Path(sys.executable).parent / "imgsearch")
    folder = tmp_path / "phone"
    folder.mkdir()
    pictures = {"astronaut": skimage.data.astronaut(), "coffee": skimage.data.coffee(), "rocket": skimage.data.rocket(),
                "chelsea": skimage.data.chelsea()}
    for i, (name, array) in enumerate(pictures.items()):
        suffix = list(FORMATS)[i % 3]
        (folder / f"{name}.{suffix}").write_bytes(_encoded(Image.fromarray(array), FORMATS[suffix]))
    assert sorted(p.path.rsplit("/", 1)[1] for p in iter_image_files([folder])) == [
        "astronaut.heic", "chelsea.heic", "coffee.heif", "rocket.avif"]
    env = fake_model_env()
    run = subprocess.run([imgsearch, "index", str(folder), "--index", str(tmp_path / "idx"), "--backbone", NAME],
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0 and "indexed 4 new images" in run.stderr + run.stdout, run.stderr
    queries = []
    for name, array in pictures.items():
        queries.append(tmp_path / f"{name}.jpg")
        Image.fromarray(array).save(queries[-1], "JPEG", quality=85)
    run = subprocess.run([imgsearch, "search", "--index", str(tmp_path / "idx"), *map(str, queries), "-k", "1",
                          "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    answers = [json.loads(line) for line in run.stdout.splitlines()]  # one JSON line per query, in order
    assert [a["query"] for a in answers] == list(map(str, queries))
    for name, answer in zip(pictures, answers):
        best = answer["results"][0]
        assert best["path"].rsplit("/", 1)[1].split(".")[0] == name and best["score"] > 0.98, (name, best)
