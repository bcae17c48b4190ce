"""A frozen backbone's features of every photo at its four turns, computed once; heads are fitted on them in seconds.

The served RotationNet is backbone -> 2x2 average pool -> linear. With the backbone frozen, a photo's pooled
features at the four quarter turns are all that any head, at any of the photo's turns, with or without turn
averaging, ever sees: a turned view of a turned photo is another quarter turn of the same photo. So one forward
pass per photo, turn and augmentation lets leave-one-source-out evaluation fit a head per left-out group (dozens
of fits) on two CPU cores, and `make weights` fit the shipped one the same way.

Quarter turns commute with squeezing the photo to a square (`to_pixels`), so `torch.rot90` of the model's input
is exactly what the handler feeds it for the photo turned.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor, nn

from food_rotation.photo_io import load_upright
from food_rotation.rotation_model import CLASSES, RotationNet, to_pixels
from food_rotation.training.rotation_data import MAX_TRAINING_PIXELS, augment

TURNS = len(CLASSES)
# turn_label[j]: the class of a photo seen rot90'd j times (torch.rot90 over H, W: counter-clockwise on screen):
# turning it CLASSES[c] degrees counter-clockwise more must make it upright, so c * 90 + j * 90 = 0 (mod 360).
TURN_LABEL = tuple((-j) % TURNS for j in range(TURNS))


@dataclass(frozen=True)
class PhotoFeatures:
    """features[p, a, j]: photo p, augmentation a (0 = the photo as it is), seen rot90'd j times, pooled 2x2 and
    flattened (float16, what a head's linear layer reads)."""

    photos: list[Path]
    features: Tensor  # (P, A, 4, D)

    def subset(self, indices: Sequence[int]) -> PhotoFeatures:
        return PhotoFeatures([self.photos[i] for i in indices], self.features[list(indices)])


def centre_square(img: Image.Image) -> Image.Image:
    """The largest centred square: the photo with no aspect ratio left to read the turn from."""
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def pooled(backbone: nn.Module, net: RotationNet, pixels: Tensor) -> Tensor:
    """What the head's linear layer reads: the normalised batch through the backbone, averaged to 2x2, flattened."""
    return nn.functional.adaptive_avg_pool2d(backbone(net.normalise(pixels)), 2).flatten(1)


@torch.inference_mode()
def photo_features(net: RotationNet, photos: Sequence[Path], image_size: int, augmentations: int = 0,
                   seed: int = 0, square: bool = False, batch: int = 32) -> PhotoFeatures:
    """Every photo (centre-cropped to a square with `square`) as it is and in `augmentations` augmented copies
    (training/rotation_data.augment: crops, mirror, colour; never a turn), each at four quarter turns."""
    net.eval()
    rng_state = random.getstate()
    random.seed(seed)
    try:
        views = []
        for photo in photos:
            img, _ = load_upright(photo.read_bytes(), int(image_size * 1.2), MAX_TRAINING_PIXELS)
            img = centre_square(img) if square else img
            copies = [img, *(augment(img) for _ in range(augmentations))]
            views.extend(to_pixels(copy, image_size) for copy in copies)
    finally:
        random.setstate(rng_state)
    stacked = torch.stack(views)
    out = []
    for start in range(0, len(stacked), batch):
        chunk = stacked[start:start + batch]
        turned = torch.cat([torch.rot90(chunk, j, (2, 3)) for j in range(TURNS)])
        out.append(pooled(net.backbone, net, turned).view(TURNS, len(chunk), -1).transpose(0, 1).half())
    features = torch.cat(out).view(len(photos), 1 + augmentations, TURNS, -1)
    return PhotoFeatures(list(photos), features)


def training_views(features: Tensor, uniform: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(inputs (N, D), targets (N, 4) as probabilities): every augmentation at every turn, labelled with its
    turn; the photos of `uniform` (no up) labelled 1/4 each, so that the head learns to be unsure of them."""
    inputs = features.float().reshape(-1, features.shape[-1])
    one_hot = torch.eye(TURNS)[list(TURN_LABEL)]  # view j -> its class
    targets = one_hot.repeat(features.shape[0] * features.shape[1], 1)
    if uniform is not None and len(uniform):
        inputs = torch.cat([inputs, uniform.float().reshape(-1, uniform.shape[-1])])
        targets = torch.cat([targets, torch.full((uniform.shape[0] * uniform.shape[1] * TURNS, TURNS), 1 / TURNS)])
    return inputs, targets


def fit_head(inputs: Tensor, targets: Tensor, weight_decay: float, epochs: int = 300, seed: int = 0) -> nn.Linear:
    """The linear layer of the spatial head, fitted by cross-entropy to soft targets (full batch, Adam)."""
    torch.manual_seed(seed)
    mean, std = inputs.mean(0), inputs.std(0) + 1e-3
    scaled = (inputs - mean) / std
    linear = nn.Linear(inputs.shape[1], TURNS)
    optimiser = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = -(targets * torch.log_softmax(linear(scaled), 1)).sum(1).mean()
        loss = loss + weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        optimiser.step()
    with torch.no_grad():  # fold the standardisation into the layer: it reads raw pooled features
        folded = nn.Linear(inputs.shape[1], TURNS)
        folded.weight.copy_(linear.weight / std)
        folded.bias.copy_(linear.bias - (linear.weight * mean / std).sum(1))
    return folded


@torch.inference_mode()
def turned_view_log_probs(head: nn.Linear, features: Tensor) -> Tensor:
    """(P, 4 items, 4 views, 4 classes): for photo p shown turned as item k (label k), the log-probabilities of
    each of its four turned views, moved back to the item's frame, as RotationNet.turned_views gives them. Item k
    is the photo rot90'd j_k times (TURN_LABEL[j_k] = k); its view v is the photo rot90'd j_k + v times."""
    log_probs = torch.log_softmax(head(features.float()), -1)  # (P, 4 turns j, 4)
    rot_of_item = [TURN_LABEL.index(k) for k in range(TURNS)]
    items = []
    for k in range(TURNS):
        views = [torch.roll(log_probs[:, (rot_of_item[k] + v) % TURNS], v, dims=-1) for v in range(TURNS)]
        items.append(torch.stack(views, 1))
    return torch.stack(items, 1)
