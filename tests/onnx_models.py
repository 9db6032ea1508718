"""ONNX image encoders written at test time (issue 33, item 2).

``write_tiny_cnn``: a few ops built with onnx's helper API, no TensorFlow: a 3x3 convolution with seeded random
weights, ReLU, and two outputs, the feature map ``map`` (n, C, h, w) and its global average ``embedding``
(n, C), so the spec's pooling can be checked against the model's own.  ``export_lite0``: the product's own
EfficientNet-Lite0 features model, exported by tf2onnx (slow: TensorFlow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIZE = 32  # pixels a side
CHANNELS = 16  # the embedding's dimension
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPEC = {"input_size": SIZE, "layout": "NCHW", "mean": list(MEAN), "std": list(STD), "output": "embedding",
        "pooling": "none"}


def write_tiny_cnn(path: Path, seed: int = 0, layout: str = "NCHW", batch: int | str = "n",
                   sequence: bool = False) -> Path:
    """Write the tiny model to ``path`` (``layout`` NHWC: a transpose first, the same weights; ``sequence``: a
    third output, ``list``, a sequence of the embedding tensor, as classifiers' non-tensor outputs are); returns it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array(rng.normal(0, 0.5, (CHANNELS, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(0, 0.1, CHANNELS).astype(np.float32), "b")
    shape = [batch, 3, SIZE, SIZE] if layout == "NCHW" else [batch, SIZE, SIZE, 3]
    nodes = [] if layout == "NCHW" else [helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2])]
    nodes += [helper.make_node("Conv", ["pixels" if layout == "NCHW" else "nchw", "w", "b"], ["conv"],
                               kernel_shape=[3, 3], strides=[2, 2]),
              helper.make_node("Relu", ["conv"], ["map"]),
              helper.make_node("GlobalAveragePool", ["map"], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["embedding"], axis=1)]
    extra = []
    if sequence:
        nodes.append(helper.make_node("SequenceConstruct", ["embedding"], ["list"]))
        extra.append(helper.make_tensor_sequence_value_info("list", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "tiny-cnn", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, CHANNELS]),
         helper.make_tensor_value_info("map", TensorProto.FLOAT, [batch, CHANNELS, None, None]), *extra],
        initializer=[weights, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_spec(path: Path, **changes) -> Path:
    path.write_text(json.dumps(dict(SPEC, **changes)))
    return path


def export_lite0(backbone, path: Path) -> Path:
    """The features model of ``backbone`` (EfficientNet-Lite0 as the indexer builds it: input the preprocessed
    (n, 224, 224, 3) image in [-1, 1]) as ONNX, by tf2onnx."""
    import tensorflow as tf
    import tf2onnx

    size = backbone.input_size
    signature = (tf.TensorSpec((None, size, size, 3), tf.float32, name="images"),)
    tf2onnx.convert.from_keras(backbone.features, input_signature=signature, opset=17, output_path=str(path))
    return path
