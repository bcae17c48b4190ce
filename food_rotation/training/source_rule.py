"""The rule every version ships with: its temperature and threshold chosen on sources it never saw.

Both ways a version is made end here: `make weights` (fit_head.py, the real photo sources) and `make retrain`
(retrain.py, the same sources plus each collected dataset as a source of its own). For a turn-averaged
EfficientNet-Lite the head recipe is fitted once per source group without it, on the frozen features of the
version's backbone (leave_one_source_out.py); the temperature is fitted on those out-of-group answers, the
threshold is the smallest that keeps harm <= max_harm on every group left out, and the head that ships is the same
recipe fitted on every trainable photo. Another architecture (the demo mobilenet) is scored as it is per group:
the same rule, on answers that are not left out (the record says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from food_rotation.rotation_model import RotationNet
from food_rotation.training.calibration import NEVER
from food_rotation.training.evaluate import collect_answers
from food_rotation.training.frozen_features import photo_features
from food_rotation.training.leave_one_source_out import (
    Answers,
    GroupAnswers,
    HeadRecipe,
    figures_at,
    group_threshold,
    out_of_group,
)
from food_rotation.training.source_evaluation import RealPhotos, Summary, left_out_rule, summary

CORRECTIONS_GROUP = "corrections-"  # a collected dataset as a source group: "corrections-feedback-2"


class NoHarmlessThreshold(Exception):
    """Even a confidence of 1.0 turns more than max_harm of some group's upright photos: the version cannot ship."""


@dataclass(frozen=True)
class SourceRule:
    """What a version records of itself: the head to ship (None: the model's own), T, the threshold, the
    per-group summary at it, and how the answers were obtained."""

    head: nn.Linear | None
    temperature: float
    threshold: float
    summary: Summary
    left_out: bool  # False: the model's own answers per group (a version that cannot refit its head)

    def record(self, max_harm: float) -> dict[str, Any]:
        """`evaluation_by_source` of the weights' .json (before model_records.tied_to)."""
        how = "leave one source out" if self.left_out else "as it is, per source group (not left out)"
        return {**self.summary.as_dict(), "max_harm": max_harm, "how": how}


def with_corrections(real: RealPhotos, datasets: Mapping[str, tuple[Sequence[Path], Sequence[Path]]]) -> RealPhotos:
    """`real` plus every collected dataset (name -> (training photos, held-out photos)) as one more source group:
    a dataset left out is scored on all its photos; only its training photos are ever fitted on."""
    photos, groups, kinds, trainable = list(real.photos), list(real.groups), list(real.kinds), list(real.trainable)
    for name, (train, held_out) in datasets.items():
        for photo, fitted in [*((p, True) for p in train), *((p, False) for p in held_out)]:
            photos.append(photo)
            groups.append(CORRECTIONS_GROUP + name)
            kinds.append("upright")
            trainable.append(fitted)
    return replace(real, photos=photos, groups=groups, kinds=kinds, trainable=trainable)


def refits_its_head(net: RotationNet) -> bool:
    """A turn-averaged net whose head is the spatial linear one: leave one source out can refit it."""
    return net.turn_averaging and isinstance(net.head[-1], nn.Linear)


def _checked(answers: Sequence[GroupAnswers], temperature: float, threshold: float, max_harm: float) -> None:
    if threshold <= 1:
        return
    hopeless = [a.group for a in answers if group_threshold(a, temperature, max_harm, True) >= NEVER]
    raise NoHarmlessThreshold(f"no threshold keeps harm <= {max_harm:.1%} on {', '.join(hopeless)}: even a "
                              "confidence of 1.0 turns too many of its upright photos")


def _rule(answers: Sequence[GroupAnswers], max_harm: float, head: nn.Linear | None, left_out: bool) -> SourceRule:
    temperature, threshold = left_out_rule(answers, max_harm, True)
    _checked(answers, temperature, threshold, max_harm)
    rows = [figures_at(group, threshold, temperature, True) for group in answers]
    return SourceRule(head, temperature, threshold, summary(rows, threshold, temperature), left_out)


def fitted_on_sources(net: RotationNet, image_size: int, photos: RealPhotos, max_harm: float,
                      augmentations: int) -> SourceRule:
    """Leave one source out on `net`'s frozen backbone, and the head fitted on every trainable photo."""
    recipe = HeadRecipe()
    features = photo_features(net, photos.photos, image_size, augmentations).features
    answers = out_of_group(features, photos.groups, photos.kinds, photos.trainable, recipe)
    head = recipe.fit(features[photos.fitted("upright")], features[photos.fitted("no_up")])
    return _rule(answers, max_harm, head, left_out=True)


def as_it_is(net: RotationNet, image_size: int, photos: RealPhotos, max_harm: float) -> SourceRule:
    """The model's own answers per group (as the handler gets them), under the same rule."""
    answers = []
    for group in sorted(set(photos.groups)):
        upright, no_up = photos.indices("upright", group), photos.indices("no_up", group)
        if not upright:
            continue
        parts = [Answers(*collect_answers(net, [photos.photos[i] for i in chosen], image_size, 32))
                 if chosen else None for chosen in (upright, no_up)]
        answers.append(GroupAnswers(group, len(upright), parts[0], parts[1]))
    return _rule(answers, max_harm, None, left_out=False)


def source_rule(net: RotationNet, image_size: int, photos: RealPhotos, max_harm: float,
                augmentations: int) -> SourceRule:
    """The rule for `net`, left out wherever its head can be refitted; NoHarmlessThreshold when none exists."""
    if refits_its_head(net):
        return fitted_on_sources(net, image_size, photos, max_harm, augmentations)
    return as_it_is(net, image_size, photos, max_harm)


def install_head(net: RotationNet, head: nn.Linear) -> None:
    with torch.no_grad():
        net.head[-1].weight.copy_(head.weight)
        net.head[-1].bias.copy_(head.bias)
