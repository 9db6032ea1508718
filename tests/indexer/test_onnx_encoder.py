"""ONNX image encoders (issue 33, item 2): ``--backbone onnx:FILE.onnx --spec SPEC.json``, run by onnxruntime.

The fast tests use a tiny model built with onnx's helper API at test time (tests/onnx_models.py: a convolution,
ReLU, a feature-map output and its global average), no TensorFlow: the spec's checks, the preprocessing and
pooling against the model's own outputs, the manifest, a damaged or missing file, a changed or moved model
refused at search, and the CLI and Python round trips.  The slow one exports the product's own
EfficientNet-Lite0 to ONNX (tf2onnx) and checks it embeds as the TFLite float32 path does.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgsearch.indexer.errors import InvalidInputError, MissingDependencyError
from imgsearch.indexer.model import backbones, onnx_encoder
from imgsearch.indexer.model.backbones import BackboneError, load_backbone
from imgsearch.indexer.model.embedder import Embedder
from imgsearch.indexer.model.onnx_encoder import OnnxModelError
from imgsearch.indexer.model.onnx_spec import OnnxSpecError, parse_spec, read_spec
from tests.onnx_models import CHANNELS, MEAN, SIZE, SPEC, STD, write_spec, write_tiny_cnn

IMGSEARCH = str(Path(sys.executable).parent / "imgsearch")


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_cnn(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def _pixels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)


# ---------------------------------------------------------------- the spec, without a model


@pytest.mark.parametrize("changes, message", [
    ({"input_size": 0}, "'input_size' is 0: write the model's input side in pixels"),
    ({"input_size": "224"}, "'input_size' is \"224\""),
    ({"input_size": [224, 160]}, "not square.*export the model with a square input"),
    ({"mean": [0.5, 0.5]}, "'mean' is \\[0.5, 0.5\\]: write one number or three"),
    ({"std": [0.2, 0, 0.2]}, "'std' is .*every value must be above 0"),
    ({"scale": 0.01}, "has mean/std and scale/offset: write one pair"),
    ({"layout": "CHW"}, "'layout' is \"CHW\": write one of NHWC, NCHW"),
    ({"pooling": "max"}, "'pooling' is \"max\": write one of none, gap, class-token"),
    ({"resize": "squash"}, "'resize' is \"squash\": write one of shorter-side-crop"),
    ({"output": -1}, "'output' is -1: write the output's name or its position"),
    ({"outputs": 0}, "unknown field\\(s\\) outputs: the fields are"),
])
def test_a_bad_spec_is_refused_naming_the_field_and_what_to_write(changes, message):
    with pytest.raises(OnnxSpecError, match=message) as exc:
        parse_spec(dict(SPEC, **changes))
    _one_line(exc.value)


def test_a_spec_without_layout_or_size_says_what_to_write_and_two_spellings_normalise_alike():
    with pytest.raises(OnnxSpecError, match="'layout' is missing: write one of NHWC, NCHW"):
        parse_spec({"input_size": 32})
    with pytest.raises(OnnxSpecError, match="'input_size' is missing"):
        parse_spec({"layout": "NCHW"})
    by_mean = parse_spec(SPEC).normalised()
    by_scale = parse_spec({"input_size": [SIZE, SIZE], "layout": "nchw", "output": "embedding",
                           "scale": [1 / (255 * s) for s in STD], "offset": [-m / s for m, s in zip(MEAN, STD)]})
    assert by_mean == by_scale.normalised()
    assert parse_spec(by_mean).normalised() == by_mean  # the manifest's record reads back as itself


def test_the_spec_is_read_from_a_file_inline_json_or_beside_the_model_with_one_line_errors(tmp_path):
    model = tmp_path / "m.onnx"
    assert read_spec(json.dumps(SPEC), model).input_size == SIZE
    assert read_spec(str(write_spec(tmp_path / "s.json")), model).layout == "NCHW"
    with pytest.raises(OnnxSpecError, match="none given, and none beside the model at .*m.onnx.json.*--spec"):
        read_spec(None, model)
    write_spec(tmp_path / "m.onnx.json", layout="NHWC")
    assert read_spec(None, model).layout == "NHWC"
    (tmp_path / "bad.json").write_text('{"input_size": 3')
    for value, message in [(str(tmp_path / "bad.json"), "is not readable JSON"), ('{"input_size":', "inline is not JSON"),
                           (str(tmp_path / "none.json"), "spec file .*none.json does not exist"),
                           (" ", "the ONNX spec is empty"), ("[]", "spec file \\[\\] does not exist")]:
        with pytest.raises(OnnxSpecError, match=message) as exc:
            read_spec(value, model)
        _one_line(exc.value)


# ---------------------------------------------------------------- the model with its spec


def test_the_tiny_model_embeds_unit_vectors_preprocessed_and_pooled_as_its_spec_says(tiny, tmp_path):
    import onnxruntime as ort

    backbones.clear_loaded()
    pixels = _pixels(7)
    bb = load_backbone(f"onnx:{tiny}", model_spec=SPEC)
    assert (bb.name, bb.dim, bb.input_size) == (f"onnx:{tiny.resolve()}", CHANNELS, SIZE)
    vectors = Embedder(bb, batch_size=3).embed(pixels)  # batches of 3, 3, 1
    # the reference: onnxruntime on the model, preprocessed by hand as torchvision would, normalised here
    session = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"])
    x = ((pixels / 255.0 - np.array(MEAN)) / np.array(STD)).astype(np.float32).transpose(0, 3, 1, 2)
    expected = session.run(["embedding"], {"pixels": x})[0]
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.abs(vectors - expected).max() < 1e-5
    # the feature map pooled by the spec's "gap", and the same weights behind an NHWC input, embed alike
    by_map = load_backbone(f"onnx:{tiny}", model_spec=dict(SPEC, output=1, pooling="gap"))
    nhwc = write_tiny_cnn(tmp_path / "nhwc.onnx", layout="NHWC")
    by_nhwc = load_backbone(f"onnx:{nhwc}", model_spec=dict(SPEC, layout="NHWC"))
    fixed = write_tiny_cnn(tmp_path / "batch1.onnx", batch=1)  # exported with a fixed batch of 1: run one by one
    by_fixed = load_backbone(f"onnx:{fixed}", model_spec=SPEC)
    for other in (by_map, by_nhwc, by_fixed):
        assert np.abs(Embedder(other).embed(pixels) - vectors).max() < 1e-5, other.name
    bgr = load_backbone(f"onnx:{tiny}", model_spec=dict(SPEC, channels="BGR"))
    assert np.abs(Embedder(bgr).embed(pixels[..., ::-1].copy()) - vectors).max() < 1e-5


def test_a_model_or_spec_file_changed_in_the_same_process_is_opened_anew_and_a_link_keeps_its_own_path(tmp_path):
    backbones.clear_loaded()
    model = write_tiny_cnn(tmp_path / "m.onnx")
    spec = write_spec(tmp_path / "spec.json")
    first = load_backbone(f"onnx:{model}", model_spec=str(spec))
    write_spec(spec, output="map", pooling="gap")
    assert load_backbone(f"onnx:{model}", model_spec=str(spec)).extra["onnx"]["output"] == "map"
    write_tiny_cnn(model, seed=3)
    assert load_backbone(f"onnx:{model}", model_spec=str(spec)).weights_id != first.weights_id
    link = tmp_path / "link.onnx"
    link.symlink_to(model)  # the manifest keeps the link, so the file behind it may move
    assert load_backbone(f"onnx:{link}", model_spec=SPEC).name == f"onnx:{link}"


@pytest.mark.parametrize("changes, message", [
    ({"layout": "NHWC"}, "would have 32 channels, not 3; set \"layout\": \"NCHW\""),
    ({"input_size": 64}, "not 64 x 64 in layout NCHW: set \"input_size\" to its size"),
    ({"output": "features"}, "no output 'features': its outputs are embedding, map; set \"output\""),
    ({"output": 2}, "has 2 output\\(s\\) \\(embedding, map\\), no output 2"),
    ({"output": "map"}, "output 'map' has shape \\[1, 16, 15, 15\\].*set \"pooling\": \"gap\""),
    ({"pooling": "gap"}, "output 'embedding' has shape \\[1, 16\\], not a feature map.*set \"pooling\": \"none\""),
    ({"input": "images"}, "has no input 'images': its inputs are pixels"),
])
def test_a_spec_that_does_not_fit_the_model_says_what_to_change(tiny, changes, message):
    backbones.clear_loaded()
    with pytest.raises(OnnxModelError, match=message) as exc:
        load_backbone(f"onnx:{tiny}", model_spec=dict(SPEC, **changes))
    _one_line(exc.value)


def test_an_output_that_is_not_a_tensor_is_refused_naming_the_outputs(tmp_path):
    model = write_tiny_cnn(tmp_path / "seq.onnx", sequence=True)
    with pytest.raises(OnnxModelError, match="output 'list' is a seq\\(tensor\\(float\\)\\), not a tensor: set "
                                             "\"output\" to a tensor output \\(embedding, map, list\\)") as exc:
        load_backbone(f"onnx:{model}", model_spec=dict(SPEC, output="list"))
    _one_line(exc.value)
    assert load_backbone(f"onnx:{model}", model_spec=SPEC).dim == CHANNELS


def test_a_missing_or_damaged_model_file_is_a_one_line_error(tiny, tmp_path):
    backbones.clear_loaded()
    with pytest.raises(OnnxModelError, match="model file .*nowhere.onnx does not exist: pass the path") as exc:
        load_backbone(f"onnx:{tmp_path / 'nowhere.onnx'}", model_spec=SPEC)
    _one_line(exc.value)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(tiny.read_bytes()[: tiny.stat().st_size // 2])  # a copy cut short
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a model at all" * 50)
    for damaged in (cut, garbage):
        with pytest.raises(OnnxModelError, match="cannot be loaded .*export it again, or copy it again") as exc:
            load_backbone(f"onnx:{damaged}", model_spec=SPEC)
        _one_line(exc.value)


def test_without_onnxruntime_an_onnx_model_asks_for_the_extra(tiny, monkeypatch):
    backbones.clear_loaded()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'imgsearch\[onnx\]'"):
        load_backbone(f"onnx:{tiny}", model_spec=SPEC)


def test_onnx_is_float32_on_the_cpu_unless_the_gpu_is_asked_and_not_explainable(tiny):
    from imgsearch.indexer.model.backbones import NotExplainableError
    from imgsearch.indexer.model.runtime import make_runner

    backbones.clear_loaded()
    bb = load_backbone(f"onnx:{tiny}", model_spec=SPEC)
    assert "CPUExecutionProvider" in make_runner(bb, "auto").description  # no onnxruntime-gpu here
    if onnx_encoder.CUDA not in onnx_encoder.require_onnxruntime().get_available_providers():
        with pytest.raises(InvalidInputError, match="--runtime tf runs an ONNX model on the GPU.*onnxruntime-gpu"):
            make_runner(bb, "tf")
    with pytest.raises(InvalidInputError, match="float32 only, not int8"):
        make_runner(bb, "auto", precision="int8")
    with pytest.raises(NotExplainableError, match="cannot be explained cell by cell"):
        make_runner(bb, "auto", outputs="map")
    with pytest.raises(BackboneError, match="a spec is for an ONNX model.*leave out --spec"):
        load_backbone("efficientnet-lite0", model_spec=SPEC)
    with pytest.raises(BackboneError, match="carries its own weights"):
        load_backbone(f"onnx:{tiny}", weights="w.h5", model_spec=SPEC)


@pytest.mark.parametrize("record, message", [("x", "'backbone.onnx' must be an object"),
                                             ({"spec": {}}, "'backbone.onnx.sha256' must be a string"),
                                             ({"sha256": "ab"}, "'backbone.onnx.spec' must be an object")])
def test_a_manifest_whose_onnx_record_is_damaged_is_refused_not_trusted(record, message):
    from imgsearch.indexer.folder.validate import ManifestShapeError, check_manifest_shape

    manifest = {"backbone": {"name": "onnx:/m.onnx", "onnx": record}, "dim": 16, "count": 0, "shards": []}
    with pytest.raises(ManifestShapeError, match=message):
        check_manifest_shape(manifest)


# ---------------------------------------------------------------- index and search


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([IMGSEARCH, *args], capture_output=True, text=True, timeout=300)


def _refused(run: subprocess.CompletedProcess, *words: str) -> None:
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), run.stderr


@pytest.mark.slow  # 5 s of CPU or more with its child processes (tests/cpu_report.py)
def test_cli_index_and_search_by_an_onnx_model_and_refuse_a_changed_or_moved_one(tmp_path, photos_dir):
    model = write_tiny_cnn(tmp_path / "models" / "tiny.onnx")
    spec = write_spec(tmp_path / "spec.json")
    index = tmp_path / "idx"
    run = _cli("index", str(photos_dir), "--index", str(index), "--backbone", f"onnx:{model}", "--spec", str(spec),
               "--no-progress")
    assert run.returncode == 0, run.stderr
    manifest = json.loads((index / "manifest.json").read_text())
    recorded = manifest["backbone"]
    assert (recorded["name"], recorded["input_size"], manifest["dim"]) == (f"onnx:{model}", SIZE, CHANNELS)
    assert recorded["onnx"]["sha256"] == onnx_encoder.file_digest(model)
    assert recorded["onnx"]["spec"] == parse_spec(SPEC).normalised() and recorded["onnx"]["output"] == "embedding"
    assert recorded["precision"] == "float32"
    assert "onnxruntime" in manifest["runtime"]
    photos = sorted(photos_dir.glob("*.jpg"))
    spec.write_text("{}")  # search embeds with the index's recorded spec, not whatever the file says now
    found = _cli("search", "--index", str(index), "--json", "-k", "1", *map(str, photos[:3]))  # a JSON line each
    assert found.returncode == 0, found.stderr
    assert [json.loads(line)["results"][0]["path"] for line in found.stdout.splitlines()] == list(map(str, photos[:3]))
    added = _cli("index", str(photos_dir), "--index", str(index), "--no-progress")  # no --backbone, no --spec
    assert added.returncode == 0 and "indexed 0 new images" in added.stdout, added.stderr

    _refused(_cli("index", str(photos_dir), "--index", str(index), "--spec", json.dumps(dict(SPEC, channels="BGR")),
                  "--no-progress"), "under another spec", "leave out --spec")
    write_tiny_cnn(model, seed=7)  # the same path, other weights: another encoder under the same name
    _refused(_cli("search", "--index", str(index), "--json", "-k", "1", str(photos[0])),
             "model file changed", "SHA-256", "put the file it was built with back")
    _refused(_cli("index", str(photos_dir), "--index", str(index), "--no-progress"), "model file changed")
    shutil.move(str(model.parent), str(tmp_path / "elsewhere"))
    _refused(_cli("search", "--index", str(index), "--json", "-k", "1", str(photos[0])),
             "does not exist", "put the file back there, or a link to it")


def test_python_index_by_an_onnx_model_with_its_spec_beside_it_and_search_it(tmp_path, photos_dir):
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.search.engine import SearchEngine

    backbones.clear_loaded()
    model = write_tiny_cnn(tmp_path / "tiny.onnx")
    write_spec(tmp_path / "tiny.onnx.json")  # beside the model: no spec needed
    with pytest.raises(InvalidInputError, match="a model spec is for an ONNX model .*not efficientnet-lite0"):
        IndexConfig(model_spec=SPEC)
    config = IndexConfig(backbone=f"onnx:{model}", cache_dir=tmp_path / "cache", progress=False, decode_workers=0)
    index_images([str(photos_dir)], tmp_path / "idx", config)
    photo = sorted(photos_dir.glob("*.jpg"))[1]
    engine = SearchEngine.open(tmp_path / "idx", config=config)
    assert engine.search_image(photo, k=1)[0].path == str(photo)
    # indexing again with the spec given inline as a dict: the same spec, so the same index takes it
    again = index_images([str(photos_dir)], tmp_path / "idx", IndexConfig(
        backbone=f"onnx:{model}", model_spec=dict(SPEC), cache_dir=tmp_path / "cache", progress=False,
        decode_workers=0))
    assert again.added == 0


def test_the_api_and_client_search_an_onnx_index_and_explain_is_a_400(tmp_path, photos_dir):
    import requests

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.search.client import SearchClient
    from imgsearch.web.app import create_app
    from tests.helpers import LiveServer

    backbones.clear_loaded()
    model = write_tiny_cnn(tmp_path / "tiny.onnx")
    index_images([str(photos_dir)], tmp_path / "idx", IndexConfig(
        backbone=f"onnx:{model}", model_spec=SPEC, cache_dir=tmp_path / "cache", progress=False, decode_workers=0))
    photo = sorted(photos_dir.glob("*.jpg"))[3]
    server = LiveServer(create_app({"INDEX_DIR": str(tmp_path / "idx"), "WARM_UP": False}))
    try:  # the API embeds the uploaded query with the index's model and recorded spec
        found = SearchClient(server.url).search(photo, k=1)
        assert found.results[0].path == str(photo) and found.backbone == f"onnx:{model}"
        r = requests.post(f"{server.url}/api/explain", json={"query": {"id": 0}, "id": 1}, timeout=60)
        assert r.status_code == 400 and "ONNX model" in r.json()["error"]["message"], r.text
    finally:
        server.close()


# ---------------------------------------------------------------- the product's own CNN through ONNX (slow)


def test_efficientnet_lite0_exported_to_onnx_embeds_as_the_tflite_float32_path(lite0, tmp_path, photos_dir):
    """The default backbone, as the indexer builds it, exported at test time by tf2onnx: onnxruntime with the
    spec that says Lite0's preprocessing gives the TFLite float32 embeddings within 1e-4."""
    from imgsearch.indexer.inputs.images import decode_image
    from tests.onnx_models import export_lite0

    model = export_lite0(lite0, tmp_path / "lite0.onnx")
    spec = {"input_size": 224, "layout": "NHWC", "scale": 1 / 127.5, "offset": -1.0, "pooling": "none"}
    onnx_bb = load_backbone(f"onnx:{model}", model_spec=spec)
    assert onnx_bb.dim == lite0.dim == 1280
    images = np.stack([decode_image(p, 224).array for p in sorted(photos_dir.glob("*.jpg"))])  # (8, 224, 224, 3)
    tflite = Embedder(lite0, runtime="tflite", precision="float32").embed(images)
    onnx = Embedder(onnx_bb, batch_size=3).embed(images)
    assert np.abs(onnx - tflite).max() < 1e-4


def test_spark_executors_embed_with_the_onnx_model_and_its_recorded_spec(spark, tmp_path, photos_dir):
    """No spec beside the model: the executors can only embed as the driver did by the manifest's record."""
    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.folder.store import EmbeddingStore, embeddings_of
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.indexer.spark.images import index_images_spark

    model = write_tiny_cnn(tmp_path / "tiny.onnx")
    config = IndexConfig(backbone=f"onnx:{model}", model_spec=dict(SPEC, channels="BGR"), progress=False,
                         decode_workers=0, spark_master="local[2]", spark_task_size=4)
    index_images([photos_dir], tmp_path / "local", config)
    index_images_spark([photos_dir], tmp_path / "spark", config, spark=spark)
    rows = {}
    for name in ("local", "spark"):
        store = EmbeddingStore(tmp_path / name)
        table = store.read_table(store.read_manifest()["shards"]).sort_by("path")
        rows[name] = (table.column("path").to_pylist(), embeddings_of(table))
    assert rows["local"][0] == rows["spark"][0] and len(rows["local"][0]) == 8
    assert np.abs(rows["local"][1] - rows["spark"][1]).max() < 1e-6
    assert "onnxruntime" in EmbeddingStore(tmp_path / "spark").read_manifest()["runtime"]


def test_a_spark_worker_builds_its_onnx_embedder_anew_for_another_spec_or_a_changed_file(tmp_path):
    """Python workers outlive a job: the next job's index may have another spec, or the file other weights."""
    from imgsearch.indexer.spark import tasks

    model = write_tiny_cnn(tmp_path / "tiny.onnx")
    settings = tasks.TaskSettings(f"onnx:{model}", None, "auto", 8, str(tmp_path / "cache"), None, None,
                                  model_spec=parse_spec(SPEC).normalised())
    try:
        first = tasks.process_embedder(settings, 1)
        assert tasks.process_embedder(settings, 1) is first
        bgr = tasks.process_embedder(dataclasses.replace(
            settings, model_spec=parse_spec(dict(SPEC, channels="BGR")).normalised()), 1)
        assert bgr is not first
        write_tiny_cnn(model, seed=5)
        assert tasks.process_embedder(settings, 1).backbone.weights_id != first.backbone.weights_id
    finally:
        tasks.clear_embedders()
