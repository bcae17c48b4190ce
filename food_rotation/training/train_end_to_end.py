"""Fine-tune efficientnet_lite0 end to end: every photo freshly augmented every epoch, all unfrozen blocks learning.

    python scripts/train_pretrained.py data/rotation_set --end-to-end --out checkpoints/lite0.tar

The cached recipe (train_pretrained.py) sees each photo in a few fixed views and can only move the last
blocks; with two hundred real photos that is where it stops learning. Here the loader makes new crops, mirrors and
colours for every epoch and the pretrained blocks move too, at a smaller learning rate than the new head, so they
adapt without forgetting ImageNet. It costs a forward and backward pass of the whole network per item: minutes on a
GPU, the hours that `make weights` documents on two CPU cores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from food_rotation.rotation_model import RotationNet
from food_rotation.training.rotation_data import RotatedPhotos, accuracy, augment, confusion_matrix, loader

CPU = torch.device("cpu")


@dataclass(frozen=True)
class EndToEnd:
    """How the whole network learns; the stem and the first `frozen_blocks` blocks keep their ImageNet weights."""

    image_size: int = 224
    frozen_blocks: int = 0
    epochs: int = 12
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3  # pretrained blocks learn this much slower than the fresh head
    seed: int = 0
    workers: int = 2


def frozen_prefix(model: RotationNet, frozen_blocks: int) -> list[nn.Module]:
    net = model.backbone
    return [net.conv_stem, net.bn1, *net.blocks[:frozen_blocks]]


def parameter_groups(model: RotationNet, options: EndToEnd) -> list[dict]:
    """The head at `lr`, every pretrained block that is not frozen at `lr * backbone_lr_scale`."""
    frozen = {id(p) for module in frozen_prefix(model, options.frozen_blocks) for p in module.parameters()}
    for module in frozen_prefix(model, options.frozen_blocks):
        module.requires_grad_(False)
    backbone = [p for p in model.backbone.parameters() if id(p) not in frozen]
    return [{"params": list(model.head.parameters()), "lr": options.lr},
            {"params": backbone, "lr": options.lr * options.backbone_lr_scale}]


def epoch_data(groups: Sequence[tuple[str, Sequence[Path], int]], options: EndToEnd) -> DataLoader:
    """Every group's photos at the four turns, `views` times over (real photos are few and matter most)."""
    parts = [RotatedPhotos(photos, options.image_size, augment)
             for _, photos, views in groups for _ in range(views)]
    return DataLoader(ConcatDataset(parts), batch_size=options.batch_size, shuffle=True, drop_last=True,
                      num_workers=options.workers, persistent_workers=options.workers > 0,
                      generator=torch.Generator().manual_seed(options.seed), pin_memory=torch.cuda.is_available())


def fine_tune_end_to_end(model: RotationNet, groups: Sequence[tuple[str, Sequence[Path], int]],
                         held_out: Sequence[Path], options: EndToEnd,
                         device: torch.device) -> list[dict[str, float]]:
    """Train `model` in place; held-out accuracy after every epoch (the last epoch is kept, not the best)."""
    torch.manual_seed(options.seed)
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(parameter_groups(model, options), weight_decay=0.05)
    batches = epoch_data(groups, options)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[group["lr"] for group in optimizer.param_groups],
        total_steps=options.epochs * len(batches), pct_start=0.15)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.05)
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()
    print(f"end to end: {len(batches.dataset)} items an epoch on {device}", flush=True)
    history = []
    for epoch in range(1, options.epochs + 1):
        model.train()
        for module in frozen_prefix(model, options.frozen_blocks):
            module.eval()  # frozen batch norms keep ImageNet's statistics
        correct = seen = 0
        started = time.perf_counter()
        for pixels, labels in batches:
            pixels = pixels.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with autocast:
                logits = model(pixels)
                loss = criterion(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        held = held_out_accuracy(model, held_out, options.image_size, device)
        history.append({"epoch": epoch, "train_acc": correct / seen, "val_acc": held})
        print(f"epoch {epoch}: train_acc={correct / seen:.4f} held-out={held:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    return history


def held_out_accuracy(model: RotationNet, photos: Sequence[Path], image_size: int,
                      device: torch.device = CPU) -> float:
    """Argmax accuracy on `photos` at the four turns (nan for none); the last epoch's figure, not a selection."""
    if not photos:
        return float("nan")
    on_device = _OnDevice(model, device)
    return accuracy(confusion_matrix(on_device, loader(RotatedPhotos(photos, image_size), 64, False, 0, 0)))


class _OnDevice(nn.Module):
    """`model` fed from the CPU loader: the batch moves to its device, the logits come back."""

    def __init__(self, model: RotationNet, device: torch.device) -> None:
        super().__init__()
        self.model, self.device = model, device

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels.to(self.device)).float().cpu()

