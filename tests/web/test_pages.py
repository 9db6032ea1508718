"""What the page says about the index it serves: the encoder's name, and whether its scores carry bands."""

import pytest


@pytest.mark.parametrize("name, label", [
    ("efficientnet-lite0", "efficientnet-lite0"), ("dinov2_small", "dinov2_small"),
    ("/data/models/tiny-siglip", "tiny-siglip"), ("/data/models/tiny-siglip/", "tiny-siglip"),
    ("onnx:/data/models/encoder.onnx", "onnx:encoder.onnx"), ("hub:kaggle://org/model/keras/v1", "hub:kaggle://org/model/keras/v1")])
def test_the_page_names_an_encoder_by_its_last_name_not_its_whole_path(name, label):
    from imgsearch.web.pages import backbone_label

    assert backbone_label(name) == label


def test_score_bands_are_shown_only_for_the_encoder_they_were_measured_with():
    from imgsearch.search.hits import score_bands_apply

    assert score_bands_apply("efficientnet-lite0")
    for other in ("efficientnet-lite1", "resnet50", "dinov2_small", "/data/tiny-siglip", "onnx:/m.onnx", "ext:m1"):
        assert not score_bands_apply(other), other
