"""The Keras port against the PyTorch reference, and the weights against ImageNet."""

import numpy as np
import pytest

from imgsearch.indexer.inputs.images import decode_image
from imgsearch.indexer.model.backbones import _lite_weights_file, get_spec, load_backbone
from imgsearch.indexer.model.efficientnet_lite import block_specs
from imgsearch.indexer.model.torch_weights import load_state_dict
from tests.helpers import DATA

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def reference():
    # Recorded once with the PyTorch reference (scripts/make_reference_logits.py).
    return np.load(DATA / "reference_logits.npz")


def _normalise(images):  # (n, S, S, 3) uint8 -> [-1, 1]
    return (images.astype(np.float32) / 255.0 - 0.5) / 0.5


@pytest.mark.parametrize("name, blocks, skips", [
    ("efficientnet-lite0", 16, [2, 4, 6, 7, 9, 10, 12, 13, 14]),
    ("efficientnet-lite2", 21, [2, 3, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 19]),
])
def test_block_structure_read_from_tensor_names(name, blocks, skips):
    specs = block_specs(load_state_dict(_lite_weights_file(get_spec(name))))
    assert len(specs) == blocks
    assert [s.index for s in specs if s.has_skip] == skips
    assert [s.stride for s in specs].count(2) == 4  # four downsampling stages after the stem


@pytest.mark.slow  # runs the real model in TensorFlow (seconds to import per process): `make test` runs it
@pytest.mark.parametrize("variant", ["lite0", "lite2"])
def test_keras_port_matches_pytorch_reference(reference, variant):
    backbone = load_backbone(f"efficientnet-{variant}")
    features, logits = backbone.classifier(_normalise(reference[f"images_{variant}"]))
    np.testing.assert_allclose(logits.numpy(), reference[f"logits_{variant}"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(features.numpy(), reference[f"features_{variant}"], atol=1e-4, rtol=0)


def _png(arr) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _top5(backbone, arr) -> set:
    """Top-5 ImageNet classes of a photo through the full pipeline: encode, decode, crop, model."""
    image = decode_image(_png(arr), backbone.input_size)
    _, logits = backbone.classifier(_normalise(image.array[None]))
    return set(np.argsort(-logits.numpy()[0])[:5].tolist())


def test_chelsea_is_a_cat(lite0):
    import skimage.data

    top5 = _top5(lite0, skimage.data.chelsea())
    assert top5 & CAT_CLASSES, f"top-5 classes {sorted(top5)} hold no cat"
    top5 = _top5(lite0, skimage.data.coffee())
    assert top5 & {967, 968, 504}, f"top-5 classes {sorted(top5)} hold no espresso, cup or mug"


@pytest.mark.slow
def test_chelsea_is_a_cat_for_lite2():
    import skimage.data

    top5 = _top5(load_backbone("efficientnet-lite2"), skimage.data.chelsea())
    assert top5 & CAT_CLASSES, f"top-5 classes {sorted(top5)} hold no cat"
