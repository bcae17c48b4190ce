"""Figures per source group, for `scripts/evaluate.py --leave-one-source-out` and `--by-source` (`by_source`), and
for `make weights` (fit_head.py): the table, the harm-vs-fix curve per group, and the summary a version records.

--by-source scores a model as it is, per group: honest only for groups it never trained on (the table marks the
end-to-end stage's sources "(seen)"). --leave-one-source-out fits the shipped head recipe once per group on the
frozen features of the model's backbone, without that group, and scores the group with it
(leave_one_source_out.py): every group is then a source the head never saw.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from food_rotation.rotation_model import RotationNet
from food_rotation.training.calibration import operating_points, point_at
from food_rotation.training.evaluation_plots import draw_group_curves
from food_rotation.training.frozen_features import photo_features
from food_rotation.training.leave_one_source_out import (
    Answers,
    GroupAnswers,
    GroupFigures,
    HeadRecipe,
    figures_at,
    out_of_group,
    pooled_temperature,
    shipped_threshold,
    threshold_from_the_others,
    wilson_upper,
)
from food_rotation.training.model_records import configured_agreement, rounded_up
from food_rotation.training.photo_sources import end_to_end_group, is_food, labelled, source_group
from food_rotation.training.real_scenes import split_by_source


@dataclass(frozen=True)
class RealPhotos:
    """The real photos of data/real with their source group, kind (upright, no_up, unclear) and whether they are
    on the training side of real_scenes' split (the other side stays held out for evaluate.py)."""

    root: Path
    photos: list[Path]
    groups: list[str]
    kinds: list[str]
    trainable: list[bool]

    @classmethod
    def under(cls, real: Path) -> RealPhotos:
        root = real / "photos" if (real / "photos").is_dir() else real
        photos = sorted(root.rglob("*.jpg"))
        if not photos:
            raise FileNotFoundError(f"no photos under {root}: make real-data")
        kinds = labelled(photos, root)
        kind_of = {**dict.fromkeys(kinds.upright, "upright"), **dict.fromkeys(kinds.no_up, "no_up"),
                   **dict.fromkeys(kinds.unclear, "unclear")}
        train = set(split_by_source(photos, root).train)
        return cls(root, photos, [source_group(p.relative_to(root).as_posix()) for p in photos],
                   [kind_of[p] for p in photos], [p in train for p in photos])

    def indices(self, kind: str, group: str) -> list[int]:
        return [i for i, (g, k) in enumerate(zip(self.groups, self.kinds, strict=True)) if g == group and k == kind]

    def fitted(self, kind: str) -> list[int]:
        """The photos of `kind` that a head may be fitted on (the training side of the split)."""
        return [i for i, (k, t) in enumerate(zip(self.kinds, self.trainable, strict=True)) if t and k == kind]


def left_out_answers(net: RotationNet, real: RealPhotos, image_size: int, recipe: HeadRecipe, augmentations: int,
                     square: bool = False) -> list[GroupAnswers]:
    """Out-of-group answers of the head recipe on `net`'s frozen backbone (scored on centre squares with
    `square`: no aspect ratio to read the turn from)."""
    trained_on = photo_features(net, real.photos, image_size, augmentations).features
    scored = photo_features(net, real.photos, image_size, square=True).features if square else None
    return out_of_group(trained_on, real.groups, real.kinds, real.trainable, recipe, scored)


def answers_as_it_is(net: RotationNet, real: RealPhotos, image_size: int, square: bool = False) -> list[GroupAnswers]:
    """The model's own answers per group (a turn-averaged Lite net: backbone, 2x2 pool, its linear head)."""
    if not net.turn_averaging or not isinstance(net.head[-1], torch.nn.Linear):
        raise ValueError("--by-source reads a turn-averaged efficientnet_lite model (its spatial head)")
    features = photo_features(net, real.photos, image_size, square=square).features[:, 0]
    results = []
    for group in sorted(set(real.groups)):
        upright, no_up = real.indices("upright", group), real.indices("no_up", group)
        if upright:
            results.append(GroupAnswers(group, len(upright), Answers.of(net.head[-1], features[upright]),
                                        Answers.of(net.head[-1], features[no_up]) if no_up else None))
    return results


@dataclass(frozen=True)
class Summary:
    """What a version says of itself on sources it never saw."""

    threshold: float
    temperature: float
    groups: int
    worst_group: str
    worst_harm: float
    worst_harm_upper: float
    food_photos: int
    food_accuracy: float
    food_fix: float
    food_harmed: int
    all_photos: int
    all_accuracy: float
    all_fix: float
    all_harmed: int
    no_up_left_alone: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON's numbers: a figure of no photos (no food group) is None, not NaN."""
        return {key: None if isinstance(value, float) and math.isnan(value) else value
                for key, value in asdict(self).items()}


def _pooled(rows: Sequence[GroupFigures], field: str) -> float:
    photos = sum(row.photos for row in rows)
    return sum(getattr(row, field) * row.photos for row in rows) / photos if photos else float("nan")


def summary(rows: Sequence[GroupFigures], threshold: float, temperature: float) -> Summary:
    worst = max(rows, key=lambda row: (row.harm, row.harm_upper))
    food = [row for row in rows if is_food(row.group)]
    no_up = [row for row in rows if row.left_alone_no_up is not None]
    no_up_items = sum(row.no_up_items for row in no_up)
    return Summary(threshold, temperature, len(rows), worst.group, worst.harm, worst.harm_upper,
                   sum(r.photos for r in food), _pooled(food, "accuracy"), _pooled(food, "fix"),
                   sum(r.harmed for r in food), sum(r.photos for r in rows), _pooled(rows, "accuracy"),
                   _pooled(rows, "fix"), sum(r.harmed for r in rows),
                   sum(r.left_alone_no_up * r.no_up_items for r in no_up) / no_up_items if no_up_items else None)


def table(answers: Sequence[GroupAnswers], threshold: float, temperature: float, max_harm: float,
          agreement: bool, mark_seen: bool = False) -> tuple[list[str], list[GroupFigures]]:
    """The markdown table: per group at `threshold`, and at the threshold the other groups alone would choose."""
    lines = ["| group | photos | accuracy | fix | harm (95 % upper) | no up left alone | threshold from the "
             "others | its fix | its harm |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rows = []
    for group in answers:
        row = figures_at(group, threshold, temperature, agreement)
        rows.append(row)
        others = threshold_from_the_others(answers, group.group, temperature, max_harm, agreement)
        carried = figures_at(group, others, temperature, agreement)
        seen = " (seen)" if mark_seen and end_to_end_group(group.group) else ""  # --by-source is optimistic there
        no_up = "" if row.left_alone_no_up is None else f"{row.left_alone_no_up:.0%} of {row.no_up_items}"
        lines.append(f"| {group.group}{seen} | {row.photos} | {row.accuracy:.3f} | {row.fix:.1%} | "
                     f"{row.harmed}/{row.photos} = {row.harm:.1%} ({row.harm_upper:.1%}) | {no_up} | "
                     f"{others:.4f} | {carried.fix:.1%} | {carried.harmed}/{carried.photos} |")
    total = summary(rows, threshold, temperature)
    lines.append(f"| **food groups** | {total.food_photos} | {total.food_accuracy:.3f} | {total.food_fix:.1%} | "
                 f"{total.food_harmed}/{total.food_photos} "
                 f"({wilson_upper(total.food_harmed, total.food_photos):.1%}) | | | | |")
    lines.append(f"| **all groups** | {total.all_photos} | {total.all_accuracy:.3f} | {total.all_fix:.1%} | "
                 f"{total.all_harmed}/{total.all_photos} ({wilson_upper(total.all_harmed, total.all_photos):.1%}) | "
                 f"{'' if total.no_up_left_alone is None else f'{total.no_up_left_alone:.0%}'} | | | |")
    return lines, rows


def curves(answers: Sequence[GroupAnswers], threshold: float, temperature: float, agreement: bool, title: str,
           max_harm: float, out: Path) -> None:
    """The harm-vs-fix curve of every group's out-of-group answers, each marked at `threshold`."""
    lines, marks = {}, {}
    for group in answers:
        probs, labels = group.upright.probabilities(temperature), group.upright.labels
        agree = group.upright.agree if agreement else None
        lines[group.group] = operating_points(probs, labels, agree)
        marks[group.group] = point_at(probs, labels, threshold, agree)
    draw_group_curves(lines, marks, title, max_harm).save(out)


def left_out_rule(answers: Sequence[GroupAnswers], max_harm: float, agreement: bool) -> tuple[float, float]:
    """(temperature, threshold) of leave-one-source-out: T fitted on the pooled out-of-group answers, and the
    smallest threshold (four decimals, rounded up) with harm <= max_harm on every left-out group."""
    temperature = pooled_temperature(answers)
    return temperature, rounded_up(shipped_threshold(answers, temperature, max_harm, agreement))


def by_source(args: argparse.Namespace, model: RotationNet, image_size: int, temperature: float,
              min_confidence: float) -> int:
    """--by-source and --leave-one-source-out: the per-group table, its curves, its summary."""
    real = RealPhotos.under(args.data_dirs[0])
    agreement = configured_agreement(args.config, args.agreement)
    if args.leave_one_source_out:
        answers = left_out_answers(model, real, image_size, HeadRecipe(), args.augmentations, args.square)
        temperature, rule = left_out_rule(answers, args.max_harm, agreement)
        threshold = rule if args.min_confidence is None else args.min_confidence
        how = (f"leave one source out: a head fitted without each group on {args.model.name}'s frozen backbone; "
               f"T {temperature:.3f} fitted on the pooled out-of-group answers; {rule:.4f} is the smallest "
               f"threshold with harm <= {args.max_harm:.1%} on every left-out group; figures at {threshold:.4f}")
    else:
        answers = answers_as_it_is(model, real, image_size, args.square)
        threshold = min_confidence
        how = f"{args.model.name} as it is, T {temperature:.3f}, min_confidence {threshold:.4f}"
    how += ", centre squares" if args.square else ""
    lines, rows = table(answers, threshold, temperature, args.max_harm, agreement, mark_seen=args.by_source)
    print(how)
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text(f"{how}\n\n" + "\n".join(lines) + "\n")
    if args.curve:
        curves(answers, threshold, temperature, agreement, f"{args.model.name}: {how.split(':')[0]}", args.max_harm,
               args.curve)
        print(f"harm-vs-fix curves: {args.curve}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "how": how, "groups": [asdict(r) for r in rows],
                                         "summary": summary(rows, threshold, temperature).as_dict()}, indent=2))
    return 0
