"""Image-text presets (issue 33, items 3 and 4): a SigLIP preset as ``--backbone``, its image tower embedding the
index's images, its text tower recorded in the manifest and embedding words into the same space.

The model tests build a two-layer SigLIP with random weights and a SentencePiece vocabulary trained at test time
(tests/hub_presets.py, fixture ``tiny_siglip``), saved with ``save_to_preset`` and loaded by folder: the path a
downloaded preset takes too.
"""

from __future__ import annotations

import numpy as np
import pytest

from imgsearch.indexer.model import backbones, hub, image_text
from imgsearch.indexer.model.backbones import load_backbone
from imgsearch.indexer.model.hub import PresetError
from imgsearch.indexer.vectors import l2_normalize
from tests.hub_presets import SIGLIP_BIAS, SIGLIP_DIM, SIGLIP_LENGTH, SIGLIP_SCALE, SIGLIP_SIZE

TEXTS = ["a photo of a red car", "A Photo of a RED car!", "a dog sleeping under the tree", "blue sky"]


def test_a_downloaded_image_text_presets_identity_covers_its_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.weights.h5").write_bytes(b"w")
    (tmp_path / "tokenizer.json").write_text("{}")
    vocabulary = tmp_path / "assets" / "tokenizer" / "vocabulary.spm"
    vocabulary.parent.mkdir(parents=True)
    vocabulary.write_bytes(b"v1")
    image_only, paired = hub.folder_digest(tmp_path, downloaded=True), hub.folder_digest(tmp_path, True, text=True)
    vocabulary.write_bytes(b"v2")  # another vocabulary: another text tower
    assert hub.folder_digest(tmp_path, downloaded=True) == image_only
    assert hub.folder_digest(tmp_path, downloaded=True, text=True) != paired


@pytest.mark.parametrize("text, message", [("x", "'backbone.preset.text' must be an object"),
                                           ({"logit_scale": "10"}, "logit_scale' must be a positive number"),
                                           ({"logit_scale": -1.0}, "logit_scale' must be a positive number")])
def test_a_manifest_whose_text_tower_record_is_damaged_is_refused(text, message):
    """A zero-shot head takes its temperature from this record: a damaged one must not open unchecked."""
    from imgsearch.indexer.folder.validate import ManifestShapeError, check_manifest_shape

    manifest = {"backbone": {"name": "/models/siglip", "preset": {"sha256": "ab", "text": text}}, "dim": 32,
                "count": 0, "shards": []}
    with pytest.raises(ManifestShapeError, match=message):
        check_manifest_shape(manifest)
    check_manifest_shape(dict(manifest, backbone={"name": "/m", "preset": {"sha256": "ab", "text": {
        "logit_scale": None}}}))


def _keras_reference(folder, pixels, texts):
    """Both towers straight from keras_hub: the backbone and the preprocessor loaded from the preset."""
    import keras_hub

    model = keras_hub.models.SigLIPBackbone.from_preset(str(folder))
    preprocessor = keras_hub.models.SigLIPPreprocessor.from_preset(str(folder))
    packed = preprocessor({"images": pixels.astype(np.float32), "prompts": texts})
    images = np.asarray(model.get_vision_embeddings(packed["images"]))  # (n, D)
    words = np.asarray(model.get_text_embeddings(packed["token_ids"]))  # (t, D)
    return l2_normalize(images), l2_normalize(words), np.asarray(packed["token_ids"])


def test_the_tiny_siglip_embeds_images_by_its_image_tower_and_the_manifest_records_its_text_tower(
        tiny_siglip, tmp_path):
    from imgsearch.indexer.model.embedder import Embedder

    backbones.clear_loaded()
    bb = load_backbone(str(tiny_siglip), cache_dir=tmp_path)
    assert (bb.input_size, bb.dim) == (SIGLIP_SIZE, SIGLIP_DIM)
    preset = bb.describe()["preset"]
    assert preset["class"] == "SigLIPBackbone" and preset["pooling"] == image_text.POOLED
    assert preset["sha256"] == hub.folder_digest(tiny_siglip)
    text = preset["text"]
    assert (text["class"], text["tokenizer"], text["preprocessor"], text["sequence_length"]) == (
        "SigLIPTextEncoder", "SigLIPTokenizer", "SigLIPPreprocessor", SIGLIP_LENGTH)
    assert text["logit_scale"] == pytest.approx(SIGLIP_SCALE, rel=1e-5)
    assert text["logit_bias"] == pytest.approx(SIGLIP_BIAS, rel=1e-5)
    pixels = np.random.default_rng(4).integers(0, 256, (5, SIGLIP_SIZE, SIGLIP_SIZE, 3), dtype=np.uint8)
    expected, _, _ = _keras_reference(tiny_siglip, pixels, TEXTS)
    for runtime in ("tf", "tflite"):
        got = Embedder(bb, batch_size=2, runtime=runtime, cache_dir=tmp_path).embed(pixels)
        assert got.shape == (5, SIGLIP_DIM)
        np.testing.assert_allclose(got, expected, atol=1e-4, err_msg=runtime)


def test_the_text_vectors_are_the_keras_text_towers_normalised_output(tiny_siglip):
    from imgsearch.indexer.model.text_encoder import load_text_encoder

    encoder = load_text_encoder(str(tiny_siglip))
    assert load_text_encoder(str(tiny_siglip)) is encoder  # loaded once per process and preset
    pixels = np.zeros((len(TEXTS), SIGLIP_SIZE, SIGLIP_SIZE, 3), np.uint8)
    _, expected, tokens = _keras_reference(tiny_siglip, pixels, TEXTS)
    np.testing.assert_array_equal(encoder.tokenize(TEXTS), tokens)
    assert tokens.shape == (len(TEXTS), SIGLIP_LENGTH)
    got = encoder.encode(TEXTS)
    assert got.shape == (len(TEXTS), SIGLIP_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(got[0], got[1], atol=1e-6)  # case and punctuation canonicalised, as SigLIP does
    assert not np.allclose(got[0], got[2], atol=1e-3)


def test_an_image_only_preset_has_no_text_tower(tiny_dinov2):
    from imgsearch.indexer.model.text_encoder import TextEncoder

    preset = hub.open_preset(str(tiny_dinov2))
    assert preset.text is None and "text" not in preset.describe()
    with pytest.raises(PresetError, match="has no usable text tower.*SigLIP"):
        TextEncoder(preset)


def test_a_siglip_preset_saved_without_its_preprocessor_says_how_to_add_it(tiny_siglip, tmp_path, photos_dir):
    """The backbone alone (what ``Backbone.save_to_preset`` writes): images index, words are refused with the
    command that saves the tokenizer, never a 500 or a traceback."""
    import shutil

    from imgsearch.indexer.config import IndexConfig
    from imgsearch.indexer.folder.manifest import TextQueriesUnsupportedError
    from imgsearch.indexer.model.text_encoder import TextEncoder
    from imgsearch.indexer.run.pipeline import index_images
    from imgsearch.search.engine import SearchEngine

    bare = shutil.copytree(tiny_siglip, tmp_path / "bare")
    for name in ("preprocessor.json", "tokenizer.json"):
        (bare / name).unlink()
    shutil.rmtree(bare / "assets")
    preset = hub.open_preset(str(bare))
    assert preset.text is None and "SigLIPPreprocessor" in preset.describe()["text_unavailable"]
    with pytest.raises(PresetError, match="save_to_preset"):
        TextEncoder(preset)
    backbones.clear_loaded()
    index_images([photos_dir], tmp_path / "idx", IndexConfig(backbone=str(bare), progress=False, decode_workers=0,
                                                             cache_dir=tmp_path / "cache"))
    engine = SearchEngine.open(tmp_path / "idx")
    assert len(engine.search_id(int(engine.ids[0]), k=2)) == 2  # the image tower serves as ever
    with pytest.raises(TextQueriesUnsupportedError, match="has a text tower, but.*SigLIPPreprocessor") as exc:
        engine.search_text("a red car")
    assert "\n" not in str(exc.value)


@pytest.mark.slow  # builds and runs a KerasHub model: TensorFlow
def test_a_tiny_clip_preset_embeds_images_and_words_as_keras_does(tmp_path):
    """CLIP through the same path: its projected image and text embeddings, its scale (no bias)."""
    import keras_hub

    from imgsearch.indexer.model.embedder import Embedder
    from imgsearch.indexer.model.text_encoder import load_text_encoder
    from tests.hub_presets import CLIP_PROJECTION, write_tiny_clip

    folder = write_tiny_clip(tmp_path / "clip")
    backbones.clear_loaded()
    bb = load_backbone(str(folder), cache_dir=tmp_path)
    assert (bb.input_size, bb.dim) == (SIGLIP_SIZE, CLIP_PROJECTION)
    preset = bb.describe()["preset"]
    assert preset["class"] == "CLIPBackbone" and preset["pooling"] == image_text.POOLINGS["CLIPBackbone"]
    assert (preset["text"]["class"], preset["text"]["tokenizer"]) == ("CLIPTextEncoder", "CLIPTokenizer")
    assert preset["text"]["logit_scale"] == pytest.approx(1 / 0.07, rel=1e-4) and preset["text"]["logit_bias"] is None
    model = keras_hub.models.CLIPBackbone.from_preset(str(folder))
    packed = keras_hub.models.CLIPPreprocessor.from_preset(str(folder))(
        {"images": np.random.default_rng(5).integers(0, 256, (3, SIGLIP_SIZE, SIGLIP_SIZE, 3)).astype(np.float32),
         "prompts": ["a cat", "the dog", "a red car"]})
    pixels = np.random.default_rng(5).integers(0, 256, (3, SIGLIP_SIZE, SIGLIP_SIZE, 3)).astype(np.uint8)
    images = l2_normalize(np.asarray(model.get_vision_embeddings(packed["images"])))
    for runtime in ("tf", "tflite"):
        np.testing.assert_allclose(Embedder(bb, runtime=runtime, cache_dir=tmp_path).embed(pixels), images,
                                   atol=1e-4, err_msg=runtime)
    words = l2_normalize(np.asarray(model.get_text_embeddings(packed["token_ids"])))
    np.testing.assert_allclose(load_text_encoder(str(folder)).encode(["a cat", "the dog", "a red car"]), words,
                               atol=1e-4)
