"""EfficientNet-Lite in Keras, built from a PyTorch state dict.

EfficientNet-Lite is EfficientNet without squeeze-excitation, with ReLU6 and
with the stem (32) and head (1280) widths fixed, which makes it quantisation-
and CPU-friendly.  The block structure is read off the tensor names of the
state dict (``_blocks.N._expand_conv``, ``_depthwise_conv``, ``_project_conv``,
``_bnK``) so one builder serves lite0..lite4.  What the names do not say is the
stride of each stage, which is the same for every EfficientNet.

Weight layouts: conv (out, in, kh, kw) -> Keras (kh, kw, in, out); depthwise
(C, 1, kh, kw) -> (kh, kw, C, 1); BatchNorm (gamma, beta, mean, var), eps 1e-3.
The PyTorch reference pads like TensorFlow "same", so Keras ``padding="same"``
reproduces it exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# First-block stride of each of EfficientNet's seven stages.
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
BN_EPSILON = 1e-3
FEATURE_DIM = 1280


@dataclass(frozen=True)
class BlockSpec:
    index: int
    in_channels: int
    out_channels: int
    expanded_channels: int
    kernel_size: int
    stride: int

    @property
    def has_expand(self) -> bool:
        return self.expanded_channels != self.in_channels

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs(state: dict[str, np.ndarray]) -> list[BlockSpec]:
    """Derive every MBConv block's shape from the state dict's tensor names."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
    if not indices or indices != list(range(len(indices))):
        raise ValueError("state dict has no contiguous _blocks.N entries: not an EfficientNet")
    raw = []
    for i in indices:
        p = f"_blocks.{i}."
        dw = state[p + "_depthwise_conv.weight"]  # (C, 1, k, k)
        proj = state[p + "_project_conv.weight"]  # (out, C, 1, 1)
        expand = state.get(p + "_expand_conv.weight")  # (C, in, 1, 1) or absent
        in_ch = expand.shape[1] if expand is not None else dw.shape[0]
        raw.append((i, in_ch, proj.shape[0], dw.shape[0], dw.shape[2]))
    # A stage is a run of blocks with the same output width.
    stage, specs, prev_out = -1, [], None
    for i, in_ch, out_ch, mid, k in raw:
        first = out_ch != prev_out
        if first:
            stage += 1
        if stage >= len(STAGE_STRIDES):
            raise ValueError(f"found more than {len(STAGE_STRIDES)} stages: not an EfficientNet")
        specs.append(BlockSpec(i, in_ch, out_ch, mid, k, STAGE_STRIDES[stage] if first else 1))
        prev_out = out_ch
    if stage != len(STAGE_STRIDES) - 1:
        raise ValueError(f"found {stage + 1} stages, expected {len(STAGE_STRIDES)}")
    return specs


def build_efficientnet_lite(state: dict[str, np.ndarray], input_size: int, name: str):
    """Return a Keras model mapping normalised images to ``[features, logits]``.

    Input: (n, S, S, 3) float32 in [-1, 1] (RGB/255, then (x - 0.5) / 0.5).
    Outputs: features (n, 1280) global-average-pooled penultimate layer;
    logits (n, 1000) ImageNet classes.
    """
    import keras
    from keras import layers

    weights: list[tuple[layers.Layer, list[np.ndarray]]] = []

    def conv(x, key, *, kernel=1, stride=1, depthwise=False, lname):
        w = state[key + ".weight"]
        if depthwise:
            layer = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=lname)
            weights.append((layer, [w.transpose(2, 3, 0, 1)]))  # (k, k, C, 1)
        else:
            layer = layers.Conv2D(w.shape[0], kernel, stride, padding="same", use_bias=False, name=lname)
            weights.append((layer, [w.transpose(2, 3, 1, 0)]))  # (k, k, in, out)
        return layer(x)

    def bn(x, key, lname, act=True):
        layer = layers.BatchNormalization(epsilon=BN_EPSILON, name=lname)
        weights.append((layer, [state[f"{key}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]))
        x = layer(x)
        return layers.ReLU(6.0, name=lname + "_relu6")(x) if act else x

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = conv(inputs, "_conv_stem", kernel=3, stride=2, lname="stem_conv")
    x = bn(x, "_bn0", "stem_bn")  # (n, S/2, S/2, 32)
    for spec in block_specs(state):
        p, n = f"_blocks.{spec.index}.", f"block{spec.index}_"
        h = x
        if spec.has_expand:
            h = conv(h, p + "_expand_conv", lname=n + "expand")
            h = bn(h, p + "_bn0", n + "expand_bn")
        h = conv(h, p + "_depthwise_conv", kernel=spec.kernel_size, stride=spec.stride, depthwise=True, lname=n + "dw")
        h = bn(h, p + "_bn1", n + "dw_bn")
        h = conv(h, p + "_project_conv", lname=n + "project")
        h = bn(h, p + "_bn2", n + "project_bn", act=False)
        x = layers.Add(name=n + "add")([x, h]) if spec.has_skip else h
    x = conv(x, "_conv_head", lname="head_conv")
    x = bn(x, "_bn1", "head_bn")  # (n, S/32, S/32, 1280)
    features = layers.GlobalAveragePooling2D(name="features")(x)  # (n, 1280)
    fc = layers.Dense(state["_fc.weight"].shape[0], name="logits")
    weights.append((fc, [state["_fc.weight"].T, state["_fc.bias"]]))  # (1280, 1000), (1000,)
    logits = fc(features)
    model = keras.Model(inputs, [features, logits], name=name)
    for layer, values in weights:
        layer.set_weights(values)
    return model
