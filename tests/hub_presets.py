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


# the tiny SigLIP: an image-text pair (issue 33, text queries and zero-shot heads)
SIGLIP_SIZE = 28  # pixels a side: 2 x 2 patches of 14
SIGLIP_DIM = 32
SIGLIP_LENGTH = 16  # tokens a text is packed to
SIGLIP_SCALE, SIGLIP_BIAS = 10.0, -5.0  # the head's logit scale (exp of the stored variable) and bias
WORDS = ("a photo of the cat dog car red blue green tree house bird boat sky small big picture image black white "
         "running sleeping on in with under near old new bright dark").split()


def train_sentencepiece(seed: int = 0, vocab_size: int = 40) -> bytes:
    """A SentencePiece model trained here on a few hundred generated sentences: SigLIP's special tokens
    (``</s>`` ends and pads a text, ``<unk>``), no start token."""
    import io
    import random

    import sentencepiece

    rng = random.Random(seed)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(300)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        pad_id=-1, bos_id=-1, eos_id=1, unk_id=0, eos_piece="</s>", unk_piece="<unk>", minloglevel=2)
    return model.getvalue()


def write_tiny_siglip(folder: Path, seed: int = 0) -> Path:
    """A two-layer SigLIP (hidden 32, 2 heads, 28 px, patch 14; text: 2 layers, 16 tokens) with seeded random
    weights, a SentencePiece vocabulary trained at test time, its preprocessor (tokenizer and image converter)
    and a head of logit scale 10 and bias -5, saved as a KerasHub preset in ``folder``; returns ``folder``."""
    import math

    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.SigLIPTokenizer(proto=train_sentencepiece(seed))
    vision = keras_hub.models.SigLIPVisionEncoder(
        patch_size=14, hidden_dim=SIGLIP_DIM, num_layers=2, num_heads=2, intermediate_dim=2 * SIGLIP_DIM,
        image_shape=(SIGLIP_SIZE, SIGLIP_SIZE, 3))
    text = keras_hub.models.SigLIPTextEncoder(
        vocabulary_size=tokenizer.vocabulary_size(), embedding_dim=SIGLIP_DIM, hidden_dim=SIGLIP_DIM, num_layers=2,
        num_heads=2, intermediate_dim=2 * SIGLIP_DIM, max_sequence_length=SIGLIP_LENGTH)
    backbone = keras_hub.models.SigLIPBackbone(vision, text)
    backbone.siglip_head.logit_scale.assign(math.log(SIGLIP_SCALE))
    backbone.siglip_head.logit_bias.assign(SIGLIP_BIAS)
    converter = keras_hub.layers.SigLIPImageConverter(image_size=(SIGLIP_SIZE, SIGLIP_SIZE), scale=1 / 127.5,
                                                      offset=-1.0)
    preprocessor = keras_hub.models.SigLIPPreprocessor(tokenizer=tokenizer, image_converter=converter,
                                                       sequence_length=SIGLIP_LENGTH)
    folder.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(folder))
    preprocessor.save_to_preset(str(folder))  # tokenizer.json, its vocabulary, image_converter.json, preprocessor.json
    return folder


CLIP_PROJECTION = 24  # CLIP's image and text embeddings: projections of the towers' outputs


def write_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A two-layer CLIP (hidden 32, 28 px, patch 14, projection 24; text: 2 layers, 16 tokens) with seeded random
    weights, a byte-pair vocabulary of single letters and a few merges written here, and its preprocessor, saved
    as a KerasHub preset in ``folder``; returns ``folder``."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocabulary = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for piece in [p for c in "abcdefghijklmnopqrstuvwxyz" for p in (c, c + "</w>")] + ["ca", "cat</w>", "do",
                                                                                         "dog</w>"]:
        vocabulary[piece] = len(vocabulary)
    tokenizer = keras_hub.models.CLIPTokenizer(vocabulary=vocabulary, merges=["c a", "ca t</w>", "d o", "do g</w>"])
    vision = keras_hub.models.CLIPVisionEncoder(
        patch_size=14, hidden_dim=SIGLIP_DIM, num_layers=2, num_heads=2, intermediate_dim=2 * SIGLIP_DIM,
        image_shape=(SIGLIP_SIZE, SIGLIP_SIZE, 3))
    text = keras_hub.models.CLIPTextEncoder(
        vocabulary_size=len(vocabulary), embedding_dim=SIGLIP_DIM, hidden_dim=SIGLIP_DIM, num_layers=2, num_heads=2,
        intermediate_dim=2 * SIGLIP_DIM, max_sequence_length=SIGLIP_LENGTH)
    backbone = keras_hub.models.CLIPBackbone(vision, text, projection_dim=CLIP_PROJECTION)
    converter = keras_hub.layers.CLIPImageConverter(image_size=(SIGLIP_SIZE, SIGLIP_SIZE), scale=1 / 255.0)
    preprocessor = keras_hub.models.CLIPPreprocessor(tokenizer=tokenizer, image_converter=converter,
                                                     sequence_length=SIGLIP_LENGTH)
    folder.mkdir(parents=True, exist_ok=True)
    backbone.save_to_preset(str(folder))
    preprocessor.save_to_preset(str(folder))
    return folder
