"""Tiny KerasHub encoders with random weights, written as presets at test time (issue 33): no pretrained weights
can be downloaded here, so the tests build the same keras_hub classes at toy size, ``save_to_preset`` them into a
folder and load that folder through the path a downloaded preset takes (``--backbone FOLDER``)."""

from __future__ import annotations

from pathlib import Path

SIZE = 56  # pixels a side: 4 x 4 patches of 14
PATCH = 14
DIM = 32
# DINOv2's image converter: ImageNet mean and std on [0, 1] pixels, as scale and offset on [0, 255] ones
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_tiny_dinov2(folder: Path, seed: int = 0, layers: int = 2) -> Path:
    """A two-layer DINOv2 (hidden 32, 2 heads, 56 px, patch 14) with seeded random weights and its image
    converter, saved as a KerasHub preset in ``folder``; returns ``folder``."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.DINOV2Backbone(
        patch_size=PATCH, num_layers=layers, hidden_dim=DIM, num_heads=2, intermediate_dim=2 * DIM,
        image_shape=(SIZE, SIZE, 3), position_embedding_shape=(SIZE, SIZE))
    converter = keras_hub.layers.DINOV2ImageConverter(
        image_size=(SIZE, SIZE), scale=[1 / (255 * s) for s in STD], offset=[-m / s for m, s in zip(MEAN, STD)])
    folder.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(folder))
    converter.save_to_preset(str(folder))
    return folder
