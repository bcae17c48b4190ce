"""Calibrated probabilities and the decision to turn a photo or leave it alone.

A photo is only turned when the model is sure enough: turning an upright photo sideways is worse than leaving a
turned one as it was. The temperature (fitted on held-out real photos by training/calibration.py, stored in the
archive's metadata.json) makes the softmax's confidence mean what it says; `min_confidence` is the bar.
Shared by the handler, training, calibration and evaluation so that all of them decide the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from food_rotation.rotation_model import CLASSES


def calibrated(logits: Tensor, temperature: float) -> Tensor:
    """softmax(logits / T) over the last dimension; T > 1 softens an over-confident model."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return torch.softmax(logits.float() / temperature, dim=-1)


@dataclass(frozen=True)
class Verdict:
    """What the model thinks (`model_degree`, `confidence`) and what is done about it (`applied_degree`)."""

    model_degree: int
    confidence: float
    trusted: bool

    @property
    def applied_degree(self) -> int:
        """The turn applied after EXIF: the model's when trusted, none when unsure."""
        return self.model_degree if self.trusted else 0


def decide(probabilities: Tensor, min_confidence: float) -> Verdict:
    """One photo's verdict from its calibrated probabilities (shape (4,))."""
    best = int(probabilities.argmax())
    confidence = float(probabilities[best])
    return Verdict(CLASSES[best], confidence, confidence >= min_confidence)
