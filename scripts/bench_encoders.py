#!/usr/bin/env python
"""Time per image of KerasHub and ONNX encoders beside EfficientNet-Lite0, side by side in one run (issue 33).

No pretrained DINOv2 weights can be downloaded here, and speed does not depend on the weights' values: the
encoders are KerasHub ``DINOV2Backbone``s with random weights, saved as preset folders (under --work) and loaded
by ``--backbone FOLDER``'s code path:

  tiny      2 layers, hidden 32, 56 px, patch 14 (the tests' encoder, tests/hub_presets.py)
  small     DINOv2-S/14's shape: 12 layers, hidden 384, 6 heads, MLP 1536, 224 px, patch 14 (dinov2_small)

the image-text presets are the tests' tiny SigLIP and CLIP (tests/hub_presets.py: two layers, 28 px, random
weights; their image towers here, and the time of one text query by their text towers, ``--image-text``),
and the ONNX encoder (``--backbone onnx:FILE --spec``) is EfficientNet-Lite0 itself, exported by tf2onnx
(under --work): the same network through onnxruntime (CPU provider) beside its TFLite run, with the largest
difference of their embeddings on the same images.

Each model runs on the same pre-made uint8 tensors (model only: no decoding), batch 32, through each runtime
(TFLite float32 with XNNPACK, and the compiled tf.function; onnxruntime for ONNX); best of 3.  The CPU's flags
are printed with it.

    python scripts/bench_encoders.py --work /tmp/imgsearch-bench-encoders --images 64
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from imgsearch.indexer.model.precision_choice import cpu_info

SHAPES = {  # name -> (layers, hidden, heads, mlp, size)
    "tiny": (2, 32, 2, 64, 56),
    "small": (12, 384, 6, 1536, 224),
}


def write_dinov2(folder: Path, layers: int, hidden: int, heads: int, mlp: int, size: int) -> Path:
    import keras
    import keras_hub

    if (folder / "config.json").is_file():
        return folder
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.DINOV2Backbone(patch_size=14, num_layers=layers, hidden_dim=hidden, num_heads=heads,
                                               intermediate_dim=mlp, image_shape=(size, size, 3),
                                               position_embedding_shape=(size, size))
    std, mean = (0.229, 0.224, 0.225), (0.485, 0.456, 0.406)
    converter = keras_hub.layers.DINOV2ImageConverter(image_size=(size, size), scale=[1 / (255 * s) for s in std],
                                                      offset=[-m / s for m, s in zip(mean, std)])
    backbone.save_to_preset(str(folder))
    converter.save_to_preset(str(folder))
    return folder


LITE0_SPEC = {"input_size": 224, "layout": "NHWC", "scale": 1 / 127.5, "offset": -1.0, "pooling": "none"}


def export_lite0(work: Path, cache: Path) -> Path:
    """EfficientNet-Lite0's features model (input preprocessed to [-1, 1]) as ONNX, by tf2onnx; once."""
    path = work / "efficientnet-lite0.onnx"
    if not path.is_file():
        import tensorflow as tf
        import tf2onnx

        from imgsearch.indexer.model.backbones import load_backbone

        signature = (tf.TensorSpec((None, 224, 224, 3), tf.float32, name="images"),)
        work.mkdir(parents=True, exist_ok=True)
        tf2onnx.convert.from_keras(load_backbone("efficientnet-lite0", cache_dir=cache).features,
                                   input_signature=signature, opset=17, output_path=str(path))
    return path


def ms_per_image(embedder, images: np.ndarray, repeat: int = 3) -> float:
    embedder.embed(images[:embedder.batch_size])  # warm up: traces, allocates
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        embedder.embed(images)
        best = min(best, time.perf_counter() - t)
    return 1000 * best / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/imgsearch-bench-encoders"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--encoders", default="tiny,small", help="comma-separated: " + ", ".join(SHAPES))
    parser.add_argument("--image-text", default="siglip,clip", help="the tests' tiny image-text presets: siglip, clip")
    parser.add_argument("--runtimes", default="tflite,tf")
    parser.add_argument("--onnx", default="lite0", help="'lite0': EfficientNet-Lite0 exported to ONNX; '': none")
    args = parser.parse_args()

    from imgsearch.indexer.model.backbones import load_backbone
    from imgsearch.indexer.model.embedder import Embedder

    cache = args.work / "cache"
    runtimes = args.runtimes.split(",")
    models = [("efficientnet-lite0", "efficientnet-lite0", None, runtimes)]
    if args.onnx == "lite0":
        t = time.perf_counter()
        exported = export_lite0(args.work, cache)
        models.append(("efficientnet-lite0 (ONNX, tf2onnx)", f"onnx:{exported}", LITE0_SPEC, ["auto"]))
        print(f"ONNX {exported}: ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    for name in [e for e in args.encoders.split(",") if e]:
        t = time.perf_counter()
        folder = write_dinov2(args.work / f"dinov2-{name}", *SHAPES[name])
        models.append((f"DINOv2 {name} (random weights)", str(folder), None, runtimes))
        print(f"preset {folder}: ready in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    texts = {}  # label -> preset folder, for the text query timing
    for name in [e for e in args.image_text.split(",") if e]:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' builders
        from tests import hub_presets

        folder = getattr(hub_presets, f"write_tiny_{name}")(args.work / f"tiny-{name}")
        texts[f"{name.upper() if name == 'clip' else 'SigLIP'} tiny (random weights)"] = folder
        models.append((f"{name.upper() if name == 'clip' else 'SigLIP'} tiny (random weights)", str(folder), None,
                       runtimes))
    rng = np.random.default_rng(0)
    print(f"CPU: {os.cpu_count()} cores, {' / '.join(cpu_info())}; {args.images} images, batch 32, model only")
    print(f"{'encoder':34} {'size':>5} {'dim':>5} {'runtime':40} {'ms/img':>8} {'img/s':>8} {'prepare s':>9}")
    by_size, vectors = {}, {}  # the same images for every model of one input size; embeddings by model and runtime
    for label, name, spec, model_runtimes in models:
        backbone = load_backbone(name, cache_dir=cache, model_spec=spec)
        size = backbone.input_size
        images = by_size.setdefault(size, rng.integers(0, 256, (args.images, size, size, 3), dtype=np.uint8))
        for runtime in model_runtimes:
            t = time.perf_counter()
            embedder = Embedder(backbone, 32, runtime, cache, precision="float32")
            prepare = time.perf_counter() - t
            ms = ms_per_image(embedder, images)
            vectors[label, runtime] = embedder.embed(images)
            print(f"{label:34} {size:5d} {backbone.dim:5d} {embedder.runtime[:40]:40} {ms:8.2f} {1000 / ms:8.1f} "
                  f"{prepare:9.1f}", flush=True)
    if texts:
        from imgsearch.indexer.model.text_encoder import load_text_encoder

        print(f"\n{'text tower':34} {'ms/query (warm, one text)':>26} {'first query s':>14}")
        for label, folder in texts.items():
            t = time.perf_counter()
            encoder = load_text_encoder(str(folder))
            encoder.encode(["a red bicycle"])
            first = time.perf_counter() - t
            times = []
            for i in range(20):
                t = time.perf_counter()
                encoder.encode([f"a photo of thing number {i}"])
                times.append(time.perf_counter() - t)
            print(f"{label:34} {1000 * min(times):26.2f} {first:14.1f}")
    onnx, tflite = vectors.get(("efficientnet-lite0 (ONNX, tf2onnx)", "auto")), \
        vectors.get(("efficientnet-lite0", "tflite"))
    if onnx is not None and tflite is not None:
        print(f"efficientnet-lite0 ONNX vs TFLite float32, same images: max |difference| of the unit vectors "
              f"{np.abs(onnx - tflite).max():.2e}")


if __name__ == "__main__":
    main()
