"""The rotation classifier: a torchvision backbone whose head answers one of four turns.

TorchServe's `--model-file` must define exactly one class, so the backbone builders are functions in a table.
No pretrained weights: nothing can be downloaded at run time, and the task is self-supervised anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import models

# Normalisation lives in the model, so the handler, training and evaluation all feed it plain uint8 pixels.
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)

# Class index -> counter-clockwise turn (degrees) that makes the photo upright, as PIL's rotate() applies it.
CLASSES: tuple[int, ...] = (0, 90, 180, 270)
DEFAULT_ARCH = "mobilenet_v3_small"
DEFAULT_IMAGE_SIZE = 224

_BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "mobilenet_v3_small": models.mobilenet_v3_small,
    "mobilenet_v3_large": models.mobilenet_v3_large,
    "efficientnet_b0": models.efficientnet_b0,  # the original system's choice
    "resnet18": models.resnet18,
}
ARCHS: tuple[str, ...] = tuple(_BACKBONES)


class RotationNet(nn.Module):
    """Backbone `arch` with a len(CLASSES)-way head; input is a uint8 (N, 3, S, S) batch of RGB pixels."""

    def __init__(self, arch: str = DEFAULT_ARCH) -> None:
        super().__init__()
        if arch not in _BACKBONES:
            raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch = arch
        self.backbone = _BACKBONES[arch](weights=None, num_classes=len(CLASSES))
        # Not persistent: the weights file holds learnt parameters only, and strict loading stays exact.
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.backbone((pixels.float() - self.mean) / self.std)


def for_inference(model: RotationNet, device: torch.device, channels_last: bool) -> RotationNet:
    """eval() on `device`; channels_last cut the CPU forward pass by ~28 % here (bench/forward_variants.py)."""
    model = model.to(device).eval()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def as_batch(pixels: list[Tensor], device: torch.device, channels_last: bool) -> Tensor:
    batch = torch.stack(pixels).to(device)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def to_pixels(img: Image.Image, size: int) -> Tensor:
    """The model's input: the whole photo squeezed to size x size (nothing cropped away), uint8 CHW."""
    img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
