"""Train the rotation classifier on any folder of upright photos; labels come free from turning them.

    python scripts/train.py data/demo --arch mobilenet_v3_small --epochs 6 --out checkpoints/demo.tar

Writes a training checkpoint (.tar) whenever validation accuracy improves:
{epoch, state_dict, optimizer, best_acc, arch, classes, train_acc, val_acc, image_size, ...}.
`scripts/extract_model_weight.py` turns it into the weights-only file that goes into an archive.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from food_rotation.rotation_model import ARCHS, CLASSES, DEFAULT_ARCH, DEFAULT_IMAGE_SIZE, RotationNet
from food_rotation.training.rotation_data import (
    RotatedPhotos,
    accuracy,
    augment,
    confusion_matrix,
    find_photos,
    loader,
    split_by_photo,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="folder of upright photos (searched recursively)")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/rotation.tar"))
    parser.add_argument("--arch", choices=ARCHS, default=DEFAULT_ARCH)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    parser.add_argument("--val-fraction", type=float, default=0.15, help="share of photos held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes")
    parser.add_argument("--init", type=Path, help="fine-tune from these weights (a .pth with its .json) instead of "
                                                  "starting from scratch")
    parser.add_argument("--keep", choices=("best", "last"), default="best",
                        help="checkpoint the best epoch on validation, or the last one (when the validation photos "
                             "are also the reported test, choosing on them would flatter it)")
    return parser.parse_args(argv)


def save_atomically(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(obj, partial)
    partial.replace(path)


def initial_model(arch: str, init: Path | None) -> RotationNet:
    model = RotationNet(arch)
    if init is not None:
        info = json.loads(init.with_suffix(".json").read_text())
        if info["arch"] != arch:
            raise SystemExit(f"error: {init} holds a {info['arch']}, not a {arch}: pass --arch {info['arch']}")
        model.load_state_dict(torch.load(init, weights_only=True))
    return model


@dataclass(frozen=True)
class Training:
    """How a model is trained: the command line fills one, retraining builds one directly."""

    out: Path = Path("checkpoints/rotation.tar")
    arch: str = DEFAULT_ARCH
    image_size: int = DEFAULT_IMAGE_SIZE
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0
    threads: int = os.cpu_count() or 1
    workers: int = 2
    init: Path | None = None
    keep: str = "best"  # or "last"


def _one_epoch(model: RotationNet, batches: Any, optimizer: torch.optim.Optimizer, schedule: Any,
               criterion: nn.Module, title: str) -> float:
    """One pass over the training batches; the training accuracy."""
    model.train()
    correct = seen = 0
    progress = tqdm(batches, desc=title, unit="batch", file=sys.stdout)
    for pixels, labels in progress:
        logits = model(pixels)
        loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        correct += int((logits.argmax(dim=1) == labels).sum())
        seen += len(labels)
        progress.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.3f}")
    return correct / seen


def train(options: Training, train_photos: Sequence[Path], val_photos: Sequence[Path]) -> dict[str, Any]:
    """Train on `train_photos`, validate on `val_photos`; returns what was checkpointed to options.out (no weights)."""
    random.seed(options.seed)
    torch.manual_seed(options.seed)
    torch.set_num_threads(options.threads)
    print(f"{len(train_photos)} training photos, {len(val_photos)} validation photos (x{len(CLASSES)} turns each)")
    train_batches = loader(RotatedPhotos(train_photos, options.image_size, augment), options.batch_size, True,
                           options.workers, options.seed)
    val_batches = loader(RotatedPhotos(val_photos, options.image_size), options.batch_size, False, options.workers,
                         options.seed)
    model = initial_model(options.arch, options.init)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            # torchvision's MobileNet/EfficientNet use 0.01, tuned for long ImageNet runs: in a short run from
            # scratch the running statistics lag the weights and evaluation-mode accuracy collapses to chance.
            module.momentum = 0.1
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr,
                                                   total_steps=options.epochs * len(train_batches))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.05)
    start: dict[str, Any] = {}
    if options.init is not None:  # where fine-tuning starts from: the figure a retrained version has to beat
        start["init_val_acc"] = accuracy(confusion_matrix(model, val_batches))
        print(f"before training ({options.init.name}): val_acc={start['init_val_acc']:.4f}")
    best_acc, saved = -1.0, {}
    for epoch in range(1, options.epochs + 1):
        train_acc = _one_epoch(model, train_batches, optimizer, schedule, criterion, f"epoch {epoch}/{options.epochs}")
        val_acc = accuracy(confusion_matrix(model, val_batches))
        print(f"epoch {epoch}: train_acc={train_acc:.4f} val_acc={val_acc:.4f}")
        best_acc = max(best_acc, val_acc)
        if (val_acc >= best_acc) if options.keep == "best" else (epoch == options.epochs):
            saved = {
                "epoch": epoch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                "best_acc": best_acc, "arch": options.arch, "classes": list(CLASSES), "train_acc": train_acc,
                "val_acc": val_acc, "image_size": options.image_size, "seed": options.seed,
                "train_photos": len(train_photos), "val_photos": len(val_photos), **start,
            }
            save_atomically(saved, options.out)
            print(f"saved {options.out} (epoch {epoch}, val_acc {val_acc:.4f})")
    return {key: value for key, value in saved.items() if key not in ("state_dict", "optimizer")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    train_photos, val_photos = split_by_photo(find_photos(args.data_dir), args.val_fraction, args.seed)
    train(Training(**{spec.name: getattr(args, spec.name) for spec in fields(Training)}), train_photos, val_photos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
