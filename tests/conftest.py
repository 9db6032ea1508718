"""Session-wide fixtures and hooks: this run's own caches, the real model (one per session) and the tests' fake
model (tests/pixel_model.py), small real image sets made at test time, the indexes and servers several areas
share.  Each area's own fixtures are in its conftest.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import LiveServer, write_bad_files
from tests.run_caches import isolate_caches, restore_caches

pytest_plugins = ["tests.cpu_report"]


def pytest_configure(config):
    """Before any test module is imported: this run's own caches, never the user's (tests/run_caches.py); then
    the fake model joins the backbone registry, so that indexes built with it open with it (in this process)."""
    config._imgsearch_caches = isolate_caches()
    from imgsearch.indexer.model.backbones import register_backbone
    from tests import pixel_model  # imports the product: after the caches are this run's

    register_backbone(pixel_model.SPEC)


# the fixtures that run the real CNN: TensorFlow (seconds to import in each process), the converted model and an
# index embedded with it (half a minute on two cores from an empty cache)
REAL_MODEL_FIXTURES = frozenset({"lite0", "embedder", "cnn_index", "cnn_engine", "cnn_server", "cnn_headed_index",
                                 "cnn_headed_server", "tiny_dinov2", "tiny_siglip",
                                 "siglip_index", "siglip_server"})


def pytest_collection_modifyitems(items):
    """A test that starts Spark is a ``spark`` test wherever it lives (tests/spark/ holds the ones wholly about it);
    a test that runs the real model is a ``slow`` one: `make test-fast` leaves it to `make test`, and the fake
    model (tests/pixel_model.py) serves the search and web tests that do not test the model."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "spark" in fixtures:
            item.add_marker(pytest.mark.spark)
        if fixtures & REAL_MODEL_FIXTURES:
            item.add_marker(pytest.mark.slow)


def pytest_sessionfinish(session, exitstatus):
    changed = restore_caches(session.config._imgsearch_caches)
    if changed:
        session.config.get_terminal_writer().line(
            "the test run changed the user's own caches, which tests must never touch:\n  " + "\n  ".join(changed),
            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def lite0():
    from imgsearch.indexer.model.backbones import load_backbone

    return load_backbone("efficientnet-lite0")


@pytest.fixture(scope="session")
def embedder(lite0):
    from imgsearch.indexer.model.embedder import Embedder

    return Embedder(lite0, batch_size=32)


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory) -> Path:
    """A two-layer DINOv2 with random weights saved as a KerasHub preset folder (tests/hub_presets.py)."""
    from tests.hub_presets import write_tiny_dinov2

    return write_tiny_dinov2(tmp_path_factory.mktemp("hub") / "tiny-dinov2")


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory) -> Path:
    """A two-layer SigLIP with random weights and a SentencePiece vocabulary trained at test time, saved as a
    KerasHub preset folder (tests/hub_presets.py): built once per session."""
    from tests.hub_presets import write_tiny_siglip

    return write_tiny_siglip(tmp_path_factory.mktemp("hub") / "tiny-siglip")


@pytest.fixture(scope="session")
def pixels():
    """The tests' fake model (tests/pixel_model.py): a backbone that runs in numpy, no TensorFlow."""
    from imgsearch.indexer.model.backbones import load_backbone
    from tests.pixel_model import NAME

    return load_backbone(NAME)


@pytest.fixture(scope="session")
def pixel_embedder(pixels):
    """The real ``Embedder`` over the fake model: what indexing and search run when an index was built with it."""
    from imgsearch.indexer.model.embedder import Embedder

    return Embedder(pixels, batch_size=32)


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    """scikit-image's bundled photographs as JPEG files."""
    from imgsearch.indexer.inputs.samples import export_sample

    dest = tmp_path_factory.mktemp("photos")
    export_sample("photos", dest)
    return dest


@pytest.fixture(scope="session")
def emoji_dir(tmp_path_factory) -> Path:
    """60 Noto emoji PNGs, 6 per category, in one folder per category."""
    from imgsearch.indexer.inputs.samples import export_sample

    dest = tmp_path_factory.mktemp("emoji")
    export_sample("emoji", dest, limit=60)
    return dest


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, photos_dir, emoji_dir) -> Path:
    """A folder to index: emoji by category, photos, and three bad files."""
    root = tmp_path_factory.mktemp("corpus")
    shutil.copytree(emoji_dir, root / "emoji")
    shutil.copytree(photos_dir, root / "photos")
    write_bad_files(root / "bad", photos_dir / "coffee.jpg")
    return root


def _index(sources, index_dir: Path, **config):
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images

    return index_images(sources, index_dir, IndexConfig(progress=False, **config))


def _headed_copy(index_dir: Path, copy: Path, **training) -> Path:
    """A copy of ``index_dir`` with a trained head 'cat' (labels: the parent folders)."""
    from imgsearch.indexer.learn.classifiers import HeadTrainingConfig
    from imgsearch.indexer.run.heads import train_head

    shutil.copytree(index_dir, copy)
    train_head(copy, "cat", config=HeadTrainingConfig(**training))
    return copy


def _live_server(index_dir: Path, **settings):
    from imgsearch.web import create_app

    server = LiveServer(create_app({"INDEX_DIR": str(index_dir), **settings}))
    yield server
    server.close()


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, corpus):
    """(folder, summary): the corpus indexed once with the fake model, shared read-only by search and web tests."""
    from tests.pixel_model import NAME

    index_dir = tmp_path_factory.mktemp("index") / "idx"
    return index_dir, _index([corpus], index_dir, backbone=NAME, shard_size=25)


@pytest.fixture(scope="session")
def cnn_index(tmp_path_factory, corpus, lite0):
    """(folder, summary): the corpus indexed once with efficientnet-lite0, for tests of what its neighbours mean."""
    index_dir = tmp_path_factory.mktemp("cnn-index") / "idx"
    # float32, as every index written before int8 became the default: tests compare with `embedder`
    return index_dir, _index([corpus], index_dir, shard_size=25, precision="float32")


@pytest.fixture(scope="module")
def engine(built_index):
    """A SearchEngine over the shared fake-model index (tests that need another define their own)."""
    from imgsearch.search.engine import SearchEngine

    return SearchEngine.open(built_index[0])


@pytest.fixture(scope="module")
def cnn_engine(cnn_index):
    """A SearchEngine over the shared efficientnet-lite0 index."""
    from imgsearch.search.engine import SearchEngine

    return SearchEngine.open(cnn_index[0])


@pytest.fixture(scope="module")
def client(live_server):
    """A SearchClient of the shared live server."""
    from imgsearch.search.client.http_client import SearchClient

    with SearchClient(live_server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def live_server(built_index):
    """The production server on loopback over the shared fake-model index."""
    yield from _live_server(built_index[0], MAX_CONTENT_LENGTH=2 * 1024 * 1024)


@pytest.fixture(scope="session")
def cnn_server(cnn_index):
    """The production server on loopback over the shared efficientnet-lite0 index."""
    yield from _live_server(cnn_index[0], MAX_CONTENT_LENGTH=2 * 1024 * 1024)


@pytest.fixture(scope="session")
def siglip_index(tmp_path_factory, emoji_dir, tiny_siglip) -> Path:
    """The labelled emoji indexed once with the tiny SigLIP preset (an encoder with a text tower): text queries
    and zero-shot heads; shared read-only."""
    index_dir = tmp_path_factory.mktemp("siglip-index") / "idx"
    _index([emoji_dir], index_dir, backbone=str(tiny_siglip), decode_workers=0)
    return index_dir


@pytest.fixture(scope="session")
def siglip_server(siglip_index):
    """The production server on loopback over ``siglip_index``."""
    yield from _live_server(siglip_index, MAX_CONTENT_LENGTH=2 * 1024 * 1024)


@pytest.fixture(scope="session")
def headed_index(tmp_path_factory, built_index):
    """A copy of the fake-model index with a head 'cat' (labels: the parent folders): tests here serve, store,
    damage and explain a head; what a head learns is tested on ``cnn_headed_index``.  An SVM head (scikit-learn,
    no Keras): the same stored linear head, fitted in a second where Keras takes twenty to import and train."""
    return _headed_copy(built_index[0], tmp_path_factory.mktemp("headed") / "idx", model="svm")


@pytest.fixture(scope="session")
def cnn_headed_index(tmp_path_factory, cnn_index):
    """A copy of the efficientnet-lite0 index with a head 'cat' whose classes mean what the pictures show; trained
    briefly too (15 epochs): a photo among emoji and a flag among flags are told apart all the same."""
    return _headed_copy(cnn_index[0], tmp_path_factory.mktemp("cnn-headed") / "idx", max_epochs=15, patience=3)


@pytest.fixture(scope="session")
def headed_server(headed_index):
    yield from _live_server(headed_index)


@pytest.fixture(scope="session")
def cnn_headed_server(cnn_headed_index):
    yield from _live_server(cnn_headed_index)


@pytest.fixture(scope="session")
def dup_corpus(tmp_path_factory, photos_dir) -> Path:
    """The photos, four of them edited (resized, re-encoded, one cropped) and two copied byte for byte."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dup-corpus")
    shutil.copytree(photos_dir, root / "photos")
    (root / "edits").mkdir()
    for name, quality in (("astronaut", 70), ("rocket", 80), ("chelsea", 60), ("coffee", 75)):
        with Image.open(photos_dir / f"{name}.jpg") as im:
            w, h = im.size
            if name == "coffee":
                im = im.crop((w // 20, h // 20, w - w // 20, h - h // 20))
            im.resize((w // 2, h // 2)).save(root / "edits" / f"{name}-edit.jpg", quality=quality)
    (root / "copies").mkdir()
    for name in ("chelsea", "retina"):
        shutil.copy(photos_dir / f"{name}.jpg", root / "copies" / f"{name}-copy.jpg")
    return root


@pytest.fixture
def dup_server(dup_index):
    """A fresh server (a fresh engine: nothing cached) over the shared duplicates index."""
    yield from _live_server(dup_index[0], WARM_UP=False, RELOAD_INTERVAL=None)


@pytest.fixture(scope="session")
def dup_index(tmp_path_factory, dup_corpus):
    """(folder, summary): ``dup_corpus`` indexed once with the fake model (shared read-only: copy it to change it).
    Its edits score 0.95 to 1 against their originals, two different photos at most 0.89 (``DUP_THRESHOLD``)."""
    from tests.pixel_model import NAME

    index_dir = tmp_path_factory.mktemp("dup-index") / "idx"
    return index_dir, _index([dup_corpus], index_dir, backbone=NAME)


@pytest.fixture(scope="session")
def near_dups():
    """The near-duplicate benchmark set (indexer/inputs/near_duplicates.py): photo tiles and their edits."""
    from imgsearch.indexer.inputs.near_duplicates import near_duplicate_set

    return near_duplicate_set()


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    """One local[2] SparkSession for every Spark test (a JVM start costs ~10 s); the executors' model cache
    starts empty, like a cluster node that never ran imgsearch."""
    pytest.importorskip("pyspark")
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.spark.images import spark_session

    executor_cache = tmp_path_factory.mktemp("executor-cache")
    session = spark_session(IndexConfig(progress=False, spark_master="local[2]"),
                            {"spark.ui.enabled": "false", "spark.executorEnv.IMGSEARCH_CACHE": str(executor_cache)})
    session.executor_cache = executor_cache
    yield session
    session.stop()
