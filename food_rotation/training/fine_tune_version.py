"""A served version fine-tuned on collected corrections (and demo scenes), into a checkpoint: what `make retrain`
trains (operations/retrain.py drives it). An efficientnet_lite0 keeps its frozen blocks as served and trains its top
on cached views (train_pretrained.py); a torchvision arch is fine-tuned whole (train.py). The last epoch is kept,
so its held-out accuracy is a test figure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from food_rotation.rotation_model import CLASSES, RotationNet
from food_rotation.training import train
from food_rotation.training.train_end_to_end import held_out_accuracy
from food_rotation.training.train_pretrained import FineTuning, fine_tune

CORRECTION_VIEWS = 4  # augmented views of each correction in efficientnet_lite0's cache (a demo scene gets 1)


@dataclass(frozen=True)
class Schedule:
    epochs: int
    lr: float  # the peak learning rate
    seed: int


Trainer = Callable[[Schedule, Path, dict[str, Any], Sequence[Path], Sequence[Path], Sequence[Path], Path],
                   dict[str, Any]]


def fine_tune_whole(schedule: Schedule, init: Path, info: dict[str, Any], corrections: Sequence[Path],
                    mixed: Sequence[Path], held_out: Sequence[Path], checkpoint: Path) -> dict[str, Any]:
    """A torchvision arch: train.py from `init`, the last epoch kept."""
    options = train.Training(out=checkpoint, arch=info["arch"], image_size=int(info["image_size"]),
                             epochs=schedule.epochs, lr=schedule.lr, seed=schedule.seed, init=init, keep="last")
    return train.train(options, [*corrections, *mixed], held_out)


def fine_tune_top(schedule: Schedule, init: Path, info: dict[str, Any], corrections: Sequence[Path],
                  mixed: Sequence[Path], held_out: Sequence[Path], checkpoint: Path) -> dict[str, Any]:
    """efficientnet_lite0: its top learns from cached views, its frozen blocks stay as served; a checkpoint as
    train_pretrained.py writes it (extract_model_weight.py reads it)."""
    model = RotationNet("efficientnet_lite0", bool(info.get("turn_averaging", False)))  # served as it was
    model.load_state_dict(torch.load(init, map_location="cpu", weights_only=True))
    options = FineTuning(image_size=int(info["image_size"]), epochs=schedule.epochs, lr=schedule.lr, seed=schedule.seed)
    before = held_out_accuracy(model, held_out, options.image_size)
    print(f"before training ({init.name}): held-out={before:.4f}")
    groups = [("corrections", corrections, CORRECTION_VIEWS), ("demo scenes", mixed, 1)]
    history = fine_tune(model, [group for group in groups if group[1]], held_out, options)
    saved = {
        "epoch": schedule.epochs, "state_dict": model.state_dict(), "arch": "efficientnet_lite0",
        "classes": list(CLASSES), "image_size": options.image_size, "train_acc": history[-1]["train_acc"],
        "val_acc": history[-1]["val_acc"], "seed": schedule.seed, "frozen_blocks": options.frozen_blocks,
        "history": history, "init_val_acc": before, "turn_averaging": model.turn_averaging,
    }
    train.save_atomically(saved, checkpoint)
    return {key: value for key, value in saved.items() if key != "state_dict"}


def trainer_for(arch: str) -> Trainer:
    """fine_tune_top for efficientnet_lite0, fine_tune_whole for the torchvision archs."""
    return fine_tune_top if arch == "efficientnet_lite0" else fine_tune_whole
