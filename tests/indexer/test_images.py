import io

import numpy as np
import pytest
from PIL import Image

from imgsearch.indexer.inputs.images import (
    ImageDecodeError,
    ImageTooLargeError,
    center_crop_resize,
    decode_image,
)
from tests.bad_images import animated_gif, png_declaring
from tests.helpers import rng_image, solid


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_formats_decode_to_rgb_crop(fmt):
    out = decode_image(_bytes(solid((200, 30, 30), (120, 90)), fmt), 64)
    assert out.array.shape == (64, 64, 3) and out.array.dtype == np.uint8
    assert (out.width, out.height) == (120, 90)
    r, g, b = out.array.reshape(-1, 3).mean(axis=0)
    assert r > 150 and g < 80 and b < 80  # still red


def test_exif_orientation_is_applied():
    img = rng_image(0, (80, 40))  # landscape pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    out = decode_image(_bytes(img, "PNG", exif=exif), 32)
    assert (out.width, out.height) == (40, 80)  # portrait, as shown to people
    expected = center_crop_resize(img.transpose(Image.Transpose.ROTATE_270), 32)
    np.testing.assert_array_equal(out.array, expected)


def test_alpha_composited_on_white():
    img = Image.new("RGBA", (50, 50), (255, 0, 0, 0))  # fully transparent red
    out = decode_image(_bytes(img, "PNG"), 32)
    assert out.array.min() == 255
    pal = Image.new("P", (50, 50), 0)
    pal.putpalette([0, 0, 0] * 256)
    out = decode_image(_bytes(pal, "PNG", transparency=0), 32)
    assert out.array.min() == 255  # transparent palette entry -> white, not black


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    arr = np.full((40, 40), 0x8000, dtype=np.uint16)
    out = decode_image(_bytes(Image.fromarray(arr), "PNG"), 32)
    assert abs(int(out.array.mean()) - 128) <= 1


def test_cmyk_and_greyscale_become_rgb():
    out = decode_image(_bytes(solid((0, 0, 0, 0), mode="CMYK"), "JPEG"), 32)
    assert out.array.shape == (32, 32, 3) and out.array.min() > 240  # no ink = white
    out = decode_image(_bytes(solid(90, mode="L"), "PNG"), 32)
    assert abs(int(out.array.mean()) - 90) <= 1


def test_animated_gif_uses_first_frame():
    frames = [solid((255, 0, 0)), solid((0, 0, 255))]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = decode_image(data, 32)
    assert out.array[..., 0].mean() > 200 and out.array[..., 2].mean() < 50


def test_inputs_of_every_kind_agree(tmp_path):
    img = rng_image(3)
    data = _bytes(img, "PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    ref = decode_image(data, 48).array
    for source in (str(path), path, io.BytesIO(data), Image.open(io.BytesIO(data))):
        np.testing.assert_array_equal(decode_image(source, 48).array, ref)


def test_large_jpeg_uses_draft_and_reports_original_size():
    img = rng_image(4, (2000, 1500))
    out = decode_image(_bytes(img, "JPEG", quality=90), 224)
    assert (out.width, out.height) == (2000, 1500)
    assert out.array.shape == (224, 224, 3)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"hello, I am text\n", "not an image"),
    (b"<html><body>hi</body></html>", "not an image"),
])
def test_bad_bytes_raise_with_reason(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data, 32)


def test_truncated_files_raise():
    for fmt in ("JPEG", "PNG"):
        data = _bytes(rng_image(5, (300, 200)), fmt)
        with pytest.raises(ImageDecodeError, match="cannot decode|not an image"):
            decode_image(data[: len(data) // 3], 32)


def test_missing_file_raises(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        decode_image(tmp_path / "nope.jpg", 32)


def test_gif_cut_short_in_a_later_frame_gives_its_whole_first_frame():
    """Asking Pillow whether it is animated parses frame 2 and failed with IndexError/struct.error."""
    frames = [rng_image(s, (40, 30)).convert("P") for s in (6, 7, 8)]
    data = animated_gif(frames)
    first = decode_image(_bytes(frames[0], "GIF"), 32).array
    for cut in range(len(data) // 2, len(data), 7):
        np.testing.assert_array_equal(decode_image(data[:cut], 32).array, first)


def test_pixel_limit_is_checked_before_decoding():
    # 2000 x 1500 declared, pixel data cut short: decoding would say "truncated"
    data = png_declaring(2000, 1500)
    with pytest.raises(ImageTooLargeError, match=r"2000 x 1500 pixels \(3.0 megapixels\); at most 2.9 megapixels"):
        decode_image(data, 32, max_pixels=2_900_000)
    with pytest.raises(ImageDecodeError, match="truncated") as info:
        decode_image(data, 32, max_pixels=3_000_000)
    assert not isinstance(info.value, ImageTooLargeError)


def test_special_files_are_refused_without_reading(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.jpg")  # opening it for reading, blocking, would wait for ever
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "folder.jpg").mkdir()
    for name, reason in (("pipe.jpg", "a named pipe"), ("zero.jpg", "a character device"),
                         ("dangling.jpg", "broken symbolic link"), ("folder.jpg", "a folder")):
        with pytest.raises(ImageDecodeError, match=reason):
            decode_image(tmp_path / name, 32)


def test_exif_read_in_many_threads_leaves_the_warning_filters_as_they_were():
    """Decoding threads (small runs) and server threads read EXIF at once: catch_warnings saves and restores the
    process's filters, so interleaved it could leave "ignore every warning" behind, or drop another's filter."""
    import io
    import threading
    import warnings

    from PIL import Image

    from imgsearch.indexer.inputs.metadata import exif_fields

    buffer = io.BytesIO()  # hostile EXIF: Pillow warns while parsing it
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" +
                                  bytes(range(256)) * 4)
    data = buffer.getvalue()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        before = list(warnings.filters)
        start = threading.Barrier(8)

        def read():
            start.wait()
            for _ in range(300):
                exif_fields(data)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert warnings.filters == before
