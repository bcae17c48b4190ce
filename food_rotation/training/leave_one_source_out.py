"""Leave one source out: what a rotation model does on photos from a source it never saw, and the threshold that
keeps it harmless there.

A threshold chosen on a random split is chosen on photos like the training photos: optimistic by construction
(issue 29: 0 / 84 harmed on the held-out split, 7.7 % of unseen dish photos turned). Here every source group
(photo_sources.source_group) is left out in turn: a head is fitted on the frozen features of the other groups'
photos (frozen_features.py; the same recipe as the shipped head), and answers for the group left out. Those
out-of-group answers are what the figures are computed on:
- per group: accuracy at four turns, fix (turned photos made upright), harm (upright photos turned) with its 95 %
  Wilson upper bound, and the threshold chosen on the other groups' answers (harm <= max_harm there) with what
  it does to the group left out: how a threshold carries over to a new source;
- the shipped threshold: the smallest that keeps harm <= max_harm on every left-out group, and the fix it leaves;
- photos with no up (photo_sources.NO_UP_LIST): the share of their items left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from food_rotation.abstention import calibrated
from food_rotation.training.calibration import choose_threshold, fit_temperature, point_at
from food_rotation.training.frozen_features import TURNS, fit_head, training_views, turned_view_log_probs

Z95 = 1.959964


def wilson_upper(events: int, n: int, z: float = Z95) -> float:
    """The upper end of the Wilson score interval for a share: 0 of 20 is 'at most 16 %', not '0 %'."""
    if n == 0:
        return 1.0
    share = events / n
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


@dataclass(frozen=True)
class HeadRecipe:
    """How a head is fitted on frozen features: L2 weight, epochs, and whether photos with no up are taught as
    'unsure' (uniform targets) rather than left out."""

    weight_decay: float = 1e-3
    epochs: int = 300
    no_up_uniform: bool = True

    def fit(self, upright: Tensor, no_up: Tensor | None) -> torch.nn.Linear:
        inputs, targets = training_views(upright, no_up if self.no_up_uniform else None)
        return fit_head(inputs, targets, self.weight_decay, self.epochs)


@dataclass(frozen=True)
class Answers:
    """A model's turn-averaged answers for the items of some photos: mean log-probabilities (N, 4), the label of
    each item (the turn that makes it upright), and whether the four turned views agree."""

    logits: Tensor
    labels: Tensor
    agree: Tensor

    @classmethod
    def of(cls, head: torch.nn.Linear, features: Tensor) -> Answers:
        """Every photo of `features` (P, 4 turns, D) at its four turns, as a turn-averaged RotationNet answers."""
        views = turned_view_log_probs(head, features)  # (P, 4 items, 4 views, 4)
        mean = views.mean(2)
        agree = (views.argmax(-1) == mean.argmax(-1, keepdim=True)).all(-1)
        labels = torch.arange(TURNS).repeat(features.shape[0])
        return cls(mean.reshape(-1, TURNS), labels, agree.reshape(-1))

    @staticmethod
    def pooled(parts: Sequence[Answers]) -> Answers:
        return Answers(torch.cat([p.logits for p in parts]), torch.cat([p.labels for p in parts]),
                       torch.cat([p.agree for p in parts]))

    def probabilities(self, temperature: float) -> Tensor:
        return calibrated(self.logits, temperature)


@dataclass(frozen=True)
class GroupAnswers:
    group: str
    photos: int
    upright: Answers  # the group's photos with an up, at four turns
    no_up: Answers | None  # its photos with no up, at four turns (labels meaningless)


def out_of_group(features: Tensor, groups: Sequence[str], kinds: Sequence[str], trainable: Sequence[bool],
                 recipe: HeadRecipe, scored: Tensor | None = None) -> list[GroupAnswers]:
    """For every group with photos that have an up: a head fitted on the other groups' trainable photos (every
    augmentation), answering for this group's photos as they are (augmentation 0 of `scored`, else of
    `features`: e.g. the photos centre-cropped to a square)."""
    scored = features if scored is None else scored
    kinds_t = list(kinds)
    results = []
    for group in sorted({g for g, kind in zip(groups, kinds_t, strict=True) if kind == "upright"}):
        def pick(kind: str, inside: bool, train_only: bool, group: str = group) -> list[int]:
            return [i for i, (g, k, t) in enumerate(zip(groups, kinds_t, trainable, strict=True))
                    if k == kind and (g == group) == inside and (t or not train_only)]
        head = recipe.fit(features[pick("upright", False, True)], features[pick("no_up", False, True)])
        mine, mine_no_up = pick("upright", True, False), pick("no_up", True, False)
        results.append(GroupAnswers(group, len(mine), Answers.of(head, scored[mine, 0]),
                                    Answers.of(head, scored[mine_no_up, 0]) if mine_no_up else None))
    return results


@dataclass(frozen=True)
class GroupFigures:
    group: str
    photos: int
    accuracy: float
    fix: float
    harmed: int
    harm: float
    harm_upper: float
    left_alone_no_up: float | None  # share of the no-up items not turned
    no_up_items: int


def figures_at(answers: GroupAnswers, threshold: float, temperature: float, agreement: bool) -> GroupFigures:
    probs = answers.upright.probabilities(temperature)
    agree = answers.upright.agree if agreement else None
    point = point_at(probs, answers.upright.labels, threshold, agree)
    harmed = round(point.harm * answers.photos)
    accuracy = float((probs.argmax(1) == answers.upright.labels).float().mean())
    left_alone, no_up_items = None, 0
    if answers.no_up is not None:
        no_up_probs = answers.no_up.probabilities(temperature)
        trusted = no_up_probs.max(1).values >= threshold
        if agreement:
            trusted &= answers.no_up.agree
        left_alone, no_up_items = float((~trusted).float().mean()), len(trusted)
    return GroupFigures(answers.group, answers.photos, accuracy, point.fix, harmed, point.harm,
                        wilson_upper(harmed, answers.photos), left_alone, no_up_items)


def pooled_temperature(answers: Sequence[GroupAnswers]) -> float:
    """One temperature for every group's out-of-group answers: calibration measured where it matters."""
    pooled = Answers.pooled([a.upright for a in answers])
    return fit_temperature(pooled.logits, pooled.labels)


def group_threshold(answers: GroupAnswers, temperature: float, max_harm: float, agreement: bool) -> float:
    """The smallest threshold with harm <= max_harm on this group."""
    return choose_threshold(answers.upright.probabilities(temperature), answers.upright.labels, max_harm,
                            answers.upright.agree if agreement else None)


def shipped_threshold(answers: Sequence[GroupAnswers], temperature: float, max_harm: float, agreement: bool) -> float:
    """The smallest threshold that keeps harm <= max_harm on every left-out group (harm never rises with the
    threshold, so it is the largest of the groups' own smallest thresholds)."""
    return max(group_threshold(a, temperature, max_harm, agreement) for a in answers)


def threshold_from_the_others(answers: Sequence[GroupAnswers], left_out: str, temperature: float, max_harm: float,
                              agreement: bool) -> float:
    """What a threshold chosen without this group would be: harm <= max_harm on the other groups pooled."""
    others = Answers.pooled([a.upright for a in answers if a.group != left_out])
    return choose_threshold(others.probabilities(temperature), others.labels, max_harm,
                            others.agree if agreement else None)
