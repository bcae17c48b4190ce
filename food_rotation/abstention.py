"""Calibrated probabilities and the decision to turn a photo or leave it alone.

A photo is only turned when the model is sure enough: turning an upright photo sideways is worse than leaving a
turned one as it was. The temperature (fitted on held-out real photos by training/calibration.py, stored in the
archive's metadata.json) makes the softmax's confidence mean what it says; `min_confidence` is the bar. A
turn-averaged model also sees the photo at its four turns: with `require_agreement`, a turn is trusted only when
every view gives it (on the 84 held-out real photos no upright one was called turned by all four of its views,
while the confidence bar alone is set by the single surest mistake; bench/MODEL_EXPERIMENTS.md, session 12).
Shared by the handler, training, calibration and evaluation so that all of them decide the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from food_rotation.rotation_model import CLASSES, RotationNet


class TurnedViews(nn.Module):
    """A turn-averaged RotationNet answering with its four views, (N, 4, 4) log-probabilities, instead of their
    mean: what the handler runs (traced and frozen like the net itself), so that it can also ask if they agree."""

    def __init__(self, net: RotationNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: Tensor) -> Tensor:
        return self.net.turned_views(pixels)


def answering_views(net: RotationNet) -> nn.Module:
    """What to run for an answer `averaged` can read: a turn-averaged net's four views, else the net itself."""
    return TurnedViews(net) if net.turn_averaging else net


def averaged(output: Tensor) -> tuple[Tensor, Tensor]:
    """(logits (N, 4), views agree (N,)) from a model's output: its logits as they are (one view: nothing to
    disagree), or the mean of its turned views' log-probabilities (as RotationNet's turn averaging takes it) and
    whether each view's own answer is the mean's."""
    if output.ndim == 2:
        return output, torch.ones(output.shape[0], dtype=torch.bool, device=output.device)
    mean = output.mean(dim=1)
    return mean, (output.argmax(dim=2) == mean.argmax(dim=1, keepdim=True)).all(dim=1)


def calibrated(logits: Tensor, temperature: float) -> Tensor:
    """softmax(logits / T) over the last dimension; T > 1 softens an over-confident model."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return torch.softmax(logits.float() / temperature, dim=-1)


@dataclass(frozen=True)
class Verdict:
    """What the model thinks (`model_degree`, `confidence`, whether its views agree) and what is done about it
    (`applied_degree`)."""

    model_degree: int
    confidence: float
    trusted: bool
    views_agree: bool = True

    @property
    def applied_degree(self) -> int:
        """The turn applied after EXIF: the model's when trusted, none when unsure."""
        return self.model_degree if self.trusted else 0


def decide(probabilities: Tensor, min_confidence: float, views_agree: bool = True,
           require_agreement: bool = False) -> Verdict:
    """One photo's verdict from its calibrated probabilities (shape (4,)) and whether its turned views agree."""
    best = int(probabilities.argmax())
    confidence = float(probabilities[best])
    trusted = confidence >= min_confidence and (views_agree or not require_agreement)
    return Verdict(CLASSES[best], confidence, trusted, views_agree)
