"""How a rotation model does on folders of upright photos, and whether its `min_confidence` keeps harm low.

    python scripts/evaluate.py weights/food_rotation_demo.pth data/demo_heldout --matrix confusion.png
    python scripts/evaluate.py weights/mine.pth data/heldout_a data/heldout_b --curve harm_fix.png --json out.json
    python scripts/evaluate.py weights/mine.pth data/calibration --fit-temperature --write-temperature

Every photo is scored at all four turns (label 0 = upright). Reported: argmax accuracy (overall and per class),
the confusion matrix, and at `min_confidence` and `require_agreement` (default: handler/model-config.yaml;
--min-confidence, --agreement / --no-agreement) what the handler would do:
harm (upright photos turned), fix (turned photos made upright), wrong turn, coverage; the ECE of the calibrated
probabilities, and the smallest threshold that keeps harm <= --max-harm. The temperature is --temperature, else
the "temperature" of the weights' .json, else 1. --fit-temperature fits it on this data (and the figures use it);
--write-temperature also stores it, with before/after NLL and ECE, in the .json that scripts/archive.sh reads;
--record stores the figures themselves there ("evaluation", with the weights' sha256): the archive carries them
only while they describe the weights it carries, and the admin page and `models list` show them.
The model is a weights-only .pth (with its .json from scripts/extract_model_weight.py) or a training
checkpoint .tar.

By source (data_dir: data/real, whose photos make_real_data grouped by source: training/photo_sources.py):

    python scripts/evaluate.py weights/food_rotation_lite0.pth data/real --by-source --markdown by_source.md
    python scripts/evaluate.py weights/food_rotation_lite0_e2e.pth data/real --leave-one-source-out \
        --curve loso.png --markdown loso.md [--square]

--by-source scores the model as it is, one row per source group. --leave-one-source-out fits the shipped head
recipe (training/fit_head.py) on the model's frozen backbone once per group, without it, and scores the group:
accuracy, fix, harm with its 95 % Wilson upper bound, the photos with no up left alone, and the threshold that
keeps harm <= --max-harm on every left-out group. --square scores centre crops to a square (no aspect ratio to
read the turn from).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from food_rotation.abstention import answering_views, averaged, calibrated
from food_rotation.rotation_model import CLASSES, DEFAULT_IMAGE_SIZE, RotationNet
from food_rotation.training.calibration import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    NEVER,
    Point,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    nll,
    operating_points,
    point_at,
    summary,
)
from food_rotation.training.evaluation_plots import draw_curve, draw_matrix
from food_rotation.training.extract_model_weight import CheckpointError, extract, load_checkpoint
from food_rotation.training.model_records import (
    MODEL_CONFIG,
    configured_agreement,
    configured_min_confidence,
    recorded_figures,
    rounded_up,
    sidecar_temperature,
    write_evaluation,
    write_temperature,
)
from food_rotation.training.rotation_data import RotatedPhotos, find_photos, loader
from food_rotation.training.source_evaluation import by_source


def load_model(path: Path) -> tuple[RotationNet, int]:
    """(model, image size) from a .tar checkpoint or a .pth with its .json beside it."""
    if path.suffix == ".tar":
        state_dict, info = extract(load_checkpoint(path), None)
    else:
        info = json.loads(path.with_suffix(".json").read_text())
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model = RotationNet(info["arch"], bool(info.get("turn_averaging", False)))
    model.load_state_dict(state_dict)
    return model.eval(), int(info.get("image_size", DEFAULT_IMAGE_SIZE))


@torch.inference_mode()
def collect_answers(model: RotationNet, photos: Sequence[Path], image_size: int,
                    batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """(logits (N, 4) float32, labels (N,), views agree (N,)) over every photo at every turn, as the handler gets
    them (a turn-averaged model's four views averaged and checked for agreement; one view always agrees): one
    forward pass, many figures."""
    model.eval()
    views = answering_views(model)
    logits, labels, agree = [], [], []
    for pixels, batch_labels in loader(RotatedPhotos(photos, image_size), batch_size, False, 0, 0):
        batch_logits, batch_agree = averaged(views(pixels))
        logits.append(batch_logits.float())
        labels.append(batch_labels)
        agree.append(batch_agree)
    return torch.cat(logits), torch.cat(labels), torch.cat(agree)


def pooled_photos(folders: Sequence[Path]) -> list[Path]:
    """The photos of every folder, each once, in a stable order."""
    return list(dict.fromkeys(photo for folder in folders for photo in find_photos(folder)))


def _threshold_text(threshold: float) -> str:
    return "never (1.0 still harms too much)" if threshold >= NEVER else f"{threshold:.4f}"


def report(figures: dict[str, Any], suggestion: Point, max_harm: float) -> list[str]:
    """The printout: accuracy, per class, the confusion matrix, what min_confidence does, ECE, the suggestion."""
    counts = figures["confusion"]
    n_upright = sum(counts[0])
    harmed = round(figures["harm"] * n_upright)
    lines = [f"overall accuracy {figures['accuracy']:.4f} (argmax, before abstention)"]
    lines += [f"  model_degree {degree:>3}: {value:.4f}" for degree, value in figures["per_class"].items()]
    lines.append("confusion (rows: true model_degree, columns: predicted):")
    lines.append("  true\\pred" + "".join(f"{degree:>7}" for degree in CLASSES))
    lines += [f"  {degree:>9}" + "".join(f"{c:>7}" for c in row) for degree, row in zip(CLASSES, counts, strict=True)]
    rule = " with agreement" if figures.get("require_agreement") else ""
    lines.append(f"at min_confidence {figures['threshold']:.4f}{rule}: harm {figures['harm']:.2%} "
                 f"({harmed}/{n_upright} upright photos turned), fix {figures['fix']:.2%}, "
                 f"wrong turn {figures['wrong_turn']:.2%}, coverage {figures['coverage']:.2%}")
    lines.append(f"ECE {figures['ece']:.4f} (10 bins)")
    lines.append(f"harm <= {max_harm:.2%} from min_confidence {_threshold_text(suggestion.threshold)} up: "
                 f"harm {suggestion.harm:.2%}, fix {suggestion.fix:.2%}, wrong turn {suggestion.wrong_turn:.2%}, "
                 f"coverage {suggestion.coverage:.2%}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="weights .pth (with its .json) or training checkpoint .tar")
    parser.add_argument("data_dirs", type=Path, nargs="+", metavar="data_dir",
                        help="folder of upright photos; several are pooled")
    parser.add_argument("--temperature", type=float, help="softmax temperature (default: the .json's, else 1)")
    parser.add_argument("--min-confidence", type=float,
                        help="turn a photo when its confidence is at least this (default: --config's)")
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG,
                        help="model-config.yaml whose handler: min_confidence is the default")
    parser.add_argument("--agreement", action=argparse.BooleanOptionalAction,
                        help="trust a turn only when the four turned views agree (default: --config's)")
    parser.add_argument("--max-harm", type=float, default=0.01, help="harm bound for the suggested threshold")
    parser.add_argument("--fit-temperature", action="store_true", help="fit the temperature on this data and use it")
    parser.add_argument("--write-temperature", action="store_true",
                        help="also store the fitted temperature in the weights' .json (implies --fit-temperature)")
    parser.add_argument("--record", action="store_true",
                        help="store these figures in the weights' .json: what the archive's version shows")
    parser.add_argument("--matrix", type=Path, help="write the confusion matrix here (PNG)")
    parser.add_argument("--curve", type=Path, help="write the harm-vs-fix curve here (PNG)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--by-source", action="store_true", help="one row per source group of data/real")
    parser.add_argument("--leave-one-source-out", action="store_true",
                        help="fit the head recipe without each source group and score the group")
    parser.add_argument("--square", action="store_true", help="score centre crops to a square")
    parser.add_argument("--augmentations", type=int, default=3, help="augmented copies per training photo (LOSO)")
    parser.add_argument("--markdown", type=Path, help="write the per-group table here")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    return parser.parse_args(argv)


def calibration_fit(logits: Tensor, labels: Tensor, temperature: float, folders: Sequence[Path]) -> dict[str, Any]:
    """The temperature fitted on these logits, with NLL and ECE before and after, as the .json records it."""
    fitted = fit_temperature(logits, labels)
    calibration = {
        "data": [str(folder) for folder in folders], "n": len(labels), "temperature_before": temperature,
        "temperature": fitted,
        "nll_before": nll(logits, labels, temperature), "nll_after": nll(logits, labels, fitted),
        "ece_before": expected_calibration_error(calibrated(logits, temperature), labels),
        "ece_after": expected_calibration_error(calibrated(logits, fitted), labels),
    }
    print(f"fitted temperature {fitted:.4f} (was {temperature:.4f}): NLL {calibration['nll_before']:.4f} -> "
          f"{calibration['nll_after']:.4f}, ECE {calibration['ece_before']:.4f} -> {calibration['ece_after']:.4f}")
    if not MIN_TEMPERATURE * 1.01 < fitted < MAX_TEMPERATURE / 1.01:
        print("  (at the search's bound: this data cannot pin T down; fit on held-out photos the model sometimes "
              "gets wrong, never on its training photos)")
    return calibration


def draw(args: argparse.Namespace, probs: Tensor, labels: Tensor, figures: dict[str, Any], suggestion: Point,
         min_confidence: float, temperature: float, agree: Tensor | None) -> None:
    """The confusion matrix and the harm-vs-fix curve, where asked for."""
    title = f"{args.model.name} on {', '.join(folder.name for folder in args.data_dirs)}"
    if args.matrix:
        counts = torch.tensor(figures["confusion"])
        draw_matrix(counts, f"{title}: {figures['accuracy']:.2%}").save(args.matrix)
        print(f"confusion matrix: {args.matrix}")
    if args.curve:
        shipped = point_at(probs, labels, min_confidence, agree)
        marks = [(f"min_confidence {min_confidence:.2f}", shipped, "red"),
                 (f"{_threshold_text(suggestion.threshold)} (harm <= {args.max_harm:.1%})", suggestion, "darkgreen")]
        draw_curve(operating_points(probs, labels, agree), marks, f"{title}, T={temperature:.2f}", args.max_harm
                   ).save(args.curve)
        print(f"harm-vs-fix curve: {args.curve}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if (args.write_temperature or args.record) and args.model.suffix == ".tar":
            raise ValueError("--write-temperature and --record write the .json beside a .pth; extract the .tar first")
        model, image_size = load_model(args.model)
        by_group = args.by_source or args.leave_one_source_out  # reads data/real's own grouping instead
        photos = [] if by_group else pooled_photos(args.data_dirs)
        temperature, temperature_source = ((args.temperature, "--temperature") if args.temperature is not None
                                           else sidecar_temperature(args.model))
        min_confidence, min_confidence_source = ((args.min_confidence, "--min-confidence")
                                                 if args.min_confidence is not None
                                                 else configured_min_confidence(args.config))
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
    except (CheckpointError, OSError, KeyError, ValueError, RuntimeError, pickle.UnpicklingError,
            yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if by_group:
        try:
            return by_source(args, model, image_size, temperature, min_confidence)
        except (OSError, ValueError) as exc:  # no photos grouped by source there, a model without a spatial head
            print(f"error: {exc}", file=sys.stderr)
            return 2
    logits, labels, views_agree = collect_answers(model, photos, image_size, args.batch_size)
    require_agreement = configured_agreement(args.config, args.agreement)
    agree = views_agree if require_agreement else None
    print(f"{len(photos)} photos x {len(CLASSES)} turns = {len(labels)} items "
          f"({', '.join(str(folder) for folder in args.data_dirs)})")
    calibration = None
    if args.fit_temperature or args.write_temperature:
        calibration = calibration_fit(logits, labels, temperature, args.data_dirs)
        temperature, temperature_source = calibration.pop("temperature"), "fitted on this data"
        if args.write_temperature:
            print(f"temperature written to {write_temperature(args.model, temperature, calibration)}")
    print(f"temperature {temperature:.4f} ({temperature_source}), "
          f"min_confidence {min_confidence:.4f} ({min_confidence_source})")
    probs = calibrated(logits, temperature)
    figures = {**summary(probs, labels, min_confidence, agree=agree), "require_agreement": require_agreement,
               "views_agree": float(views_agree.float().mean())}
    suggestion = point_at(probs, labels, rounded_up(choose_threshold(probs, labels, args.max_harm, agree)), agree)
    print("\n".join(report(figures, suggestion, args.max_harm)))
    draw(args, probs, labels, figures, suggestion, min_confidence, temperature, agree)
    if args.record:
        recorded = recorded_figures(figures, args.data_dirs, len(photos))
        print(f"figures recorded in {write_evaluation(args.model, recorded)}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": str(args.model), "data": [str(folder) for folder in args.data_dirs], "photos": len(photos),
            "temperature": temperature, "temperature_source": temperature_source,
            "min_confidence": min_confidence, "min_confidence_source": min_confidence_source,
            **figures, "max_harm": args.max_harm, "suggested": suggestion.as_dict(), "calibration": calibration,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
