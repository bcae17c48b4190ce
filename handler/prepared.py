"""One request item between the handler's steps (TorchServe's handler module may hold a single class, so its
item type lives here): what the caller sent, the model's input, and the model's answer once inference ran."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from food_rotation.request_payload import Payload


@dataclass
class Prepared:
    payload: Payload
    pixels: torch.Tensor
    exif_degree: int
    exif_mirrored: bool
    probabilities: torch.Tensor | None = None  # filled in by inference
    views_agree: bool = True  # filled in by inference: the four turned views' own answers are the same
