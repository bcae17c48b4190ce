"""The ImageNet weights reach timm intact: equal logits against the package's own model code."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

from food_rotation.rotation_model import LITE, RotationNet
from food_rotation.training.pretrained import imagenet_rotation_net, package_state_dict, to_timm
from tests.photos import scene


def _imagenet_input() -> torch.Tensor:
    """Two real-looking pictures (a generated scene and its mirror), scaled to [-1, 1] as Lite0 was trained."""
    picture = scene().convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1).float()
    batch = torch.stack([pixels, pixels.flip(-1)])
    return batch / 127.5 - 1


def test_mapped_weights_give_the_package_models_exact_logits() -> None:
    source = package_state_dict()
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(source)
    same_padding = timm.create_model("tf_efficientnet_lite0", pretrained=False)  # TF "same" padding, as trained
    same_padding.load_state_dict(to_timm(source, "tf_efficientnet_lite0"))
    x = _imagenet_input()
    with torch.inference_mode():
        expected, got = reference.eval()(x), same_padding.eval()(x)
    assert expected.shape == (2, 1000)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_the_served_variant_keeps_the_imagenet_answer() -> None:
    """The served efficientnet_lite0 pads symmetrically (twice as fast here): same top class, close logits."""
    source = package_state_dict()
    reference = EfficientNet.from_name("efficientnet-lite0")
    reference.load_state_dict(source)
    served = timm.create_model("efficientnet_lite0", pretrained=False)
    served.load_state_dict(to_timm(source))
    x = _imagenet_input()
    with torch.inference_mode():
        expected, got = reference.eval()(x), served.eval()(x)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] > 0.9


def test_the_rotation_net_gets_every_feature_weight_and_a_fresh_head() -> None:
    model = imagenet_rotation_net()
    mapped = to_timm(package_state_dict())
    state = model.backbone.state_dict()
    assert torch.equal(state["blocks.6.0.conv_pw.weight"], mapped["blocks.6.0.conv_pw.weight"])
    assert set(state) == set(RotationNet("efficientnet_lite0").backbone.state_dict())
    assert model.head[-1].weight.shape == (4, 1280 * 4)  # the four turns from a 2x2 map of the features


def test_every_lite_backbone_feeds_the_same_spatial_head_and_others_have_no_imagenet_weights() -> None:
    """Lite1/Lite2 (bench/MODEL_EXPERIMENTS.md) end in the same 1280 channels, so `--arch` swaps only the backbone."""
    for arch in LITE:
        model = RotationNet(arch).eval()
        assert model.head[-1].weight.shape == (4, 1280 * 4)
        with torch.inference_mode():
            assert model(torch.zeros(1, 3, 96, 96, dtype=torch.uint8)).shape == (1, 4)
    with pytest.raises(ValueError, match="no ImageNet weights for 'mobilenet_v3_small'"):
        package_state_dict("mobilenet_v3_small")
