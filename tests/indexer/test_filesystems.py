"""Sources and files at URIs: pyarrow.fs (file://, as hdfs:// or s3:// would be) and fsspec (memory://)."""

import io
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imgsearch.indexer.inputs import filesystems
from imgsearch.indexer.inputs.reader import Decoded, Skipped, read_one
from imgsearch.indexer.inputs.sources import ImageFile, iter_image_files
from imgsearch.indexer.spark.images import plan_tasks
from tests.pixel_model import NAME


def test_uri_listing_equals_local_listing(corpus):
    local = list(iter_image_files([corpus]))
    remote = list(iter_image_files([f"file://{corpus}/"]))
    assert [f.path for f in remote] == [f"file://{f.path}" for f in local]  # same order: folders sorted, files first
    assert [f.label for f in remote] == [f.label for f in local]
    assert len(local) == 71
    with pytest.raises(FileNotFoundError, match="no such file or folder: file:///nowhere"):
        list(iter_image_files(["file:///nowhere/at/all"]))


def test_lists_with_relative_and_uri_entries(tmp_path, photos_dir):
    (tmp_path / "list.txt").write_text(f"{photos_dir}/coffee.jpg\nfile://{photos_dir}/rocket.jpg\n")
    (tmp_path / "sub").mkdir()
    shutil.copy(photos_dir / "chelsea.jpg", tmp_path / "sub" / "cat.jpg")
    (tmp_path / "list.csv").write_text("path,label\nsub/cat.jpg,cats\n../" + tmp_path.name + "/sub/cat.jpg,\n")
    pq.write_table(pa.table({"path": ["sub/cat.jpg", f"{photos_dir}/astronaut.jpg"]}), tmp_path / "list.parquet")
    got = list(iter_image_files([f"file://{tmp_path}/{name}" for name in ("list.txt", "list.csv", "list.parquet")]))
    assert got == [ImageFile(f"file://{photos_dir}/coffee.jpg", photos_dir.name),
                   ImageFile(f"file://{photos_dir}/rocket.jpg", photos_dir.name),
                   ImageFile(f"file://{tmp_path}/sub/cat.jpg", "cats"),  # the same file once
                   ImageFile(f"file://{photos_dir}/astronaut.jpg", photos_dir.name)]
    # a local list naming a URI keeps it as it is
    assert [f.path for f in iter_image_files([tmp_path / "list.txt"])] == [
        str(photos_dir / "coffee.jpg"), f"file://{photos_dir}/rocket.jpg"]


def test_reading_through_uris_and_reasons_for_bad_ones(photos_dir, tmp_path):
    item = read_one(ImageFile(f"file://{photos_dir}/coffee.jpg", ""), 64, np.empty(0, np.uint64))
    local = read_one(ImageFile(str(photos_dir / "coffee.jpg"), ""), 64, np.empty(0, np.uint64))
    assert isinstance(item, Decoded) and item.sha256 == local.sha256
    np.testing.assert_array_equal(item.image.array, local.image.array)
    missing = read_one(ImageFile(f"file://{tmp_path}/missing.jpg", ""), 64, np.empty(0, np.uint64))
    assert isinstance(missing, Skipped) and missing.reason.startswith("cannot read file")
    folder = read_one(ImageFile(f"file://{tmp_path}", ""), 64, np.empty(0, np.uint64))
    assert isinstance(folder, Skipped) and "directory" in folder.reason


def test_fsspec_file_system_for_schemes_pyarrow_lacks(photos_dir):
    """memory:// exists only in fsspec: listing, reading, atomic writes and removal go through it."""
    root = "memory://imgsearch-test/photos"
    for name in ("rocket.jpg", "coffee.jpg"):
        filesystems.write_bytes(f"{root}/{name}", (photos_dir / name).read_bytes())
    filesystems.write_bytes(f"{root}/nested/cat.jpg", (photos_dir / "chelsea.jpg").read_bytes())
    files = list(iter_image_files([root]))
    assert files == [ImageFile(f"{root}/coffee.jpg", ""), ImageFile(f"{root}/rocket.jpg", ""),
                     ImageFile(f"{root}/nested/cat.jpg", "nested")]
    img = Image.open(io.BytesIO(filesystems.read_bytes(files[2].path)))
    assert img.size == Image.open(photos_dir / "chelsea.jpg").size
    assert isinstance(read_one(files[0], 32, np.empty(0, np.uint64)), Decoded)

    work = "memory://imgsearch-test/work"
    filesystems.write_parquet(pa.table({"x": [1, 2]}), f"{work}/t.parquet")
    assert filesystems.list_names(work) == ["t.parquet"]  # the temporary name is gone
    assert filesystems.read_parquet(f"{work}/t.parquet").column("x").to_pylist() == [1, 2]
    filesystems.remove_tree(work)
    assert filesystems.list_names(work) == [] and filesystems.kind(work) is None
    filesystems.remove_tree("memory://imgsearch-test")


def test_unknown_scheme_is_a_clear_error_or_a_skipped_file():
    with pytest.raises(ValueError, match="cannot open nosuchfs://x/y: neither pyarrow.fs .* nor fsspec"):
        list(iter_image_files(["nosuchfs://x/y"]))
    item = read_one(ImageFile("nosuchfs://x/y.jpg", ""), 32, np.empty(0, np.uint64))  # named in a list
    assert isinstance(item, Skipped) and "cannot open nosuchfs://x/y.jpg" in item.reason


def test_tasks_are_named_by_their_files(corpus):
    files = list(iter_image_files([corpus]))
    tasks = plan_tasks(files, 16, "lite0:abc")
    assert [len(t.files) for t in tasks] == [16, 16, 16, 16, 7]
    assert [o for t in tasks for o, _, _ in t.files] == list(range(71))
    again = plan_tasks(files, 16, "lite0:abc")
    assert [t.name for t in again] == [t.name for t in tasks] and len({t.name for t in tasks}) == 5
    assert plan_tasks(files, 16, "lite2:abc")[0].name != tasks[0].name  # another model: other results
    assert plan_tasks(files[1:], 16, "lite0:abc")[0].name != tasks[0].name


def test_local_engine_indexes_uris_and_the_page_shows_them(photos_dir, tmp_path):
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.web import create_app

    summary = index_images([f"file://{photos_dir}"], tmp_path / "idx",
                           IndexConfig(backbone=NAME, progress=False, decode_workers=0))
    assert summary.added == 8 and not summary.skipped
    client = create_app({"INDEX_DIR": str(tmp_path / "idx")}).test_client()
    hit = client.post("/api/search", json={"id": 0, "k": 1}).get_json()["results"][0]
    assert hit["path"].startswith("file:///")
    response = client.get("/api/images/0?size=64")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert max(Image.open(io.BytesIO(response.data)).size) == 64
