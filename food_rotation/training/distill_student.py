"""Distil a small, fast student (mobilenet_v3_small) from the shipped EfficientNet-Lite0 teacher.

    python -m food_rotation.training.distill_student data/rotation_set --teacher weights/food_rotation_lite0.pth \
        --init weights/food_rotation_demo.pth --turn-averaging --out checkpoints/student.tar   (make student-weights)

No ImageNet weights exist offline for the small architectures, so the student cannot be fine-tuned like the
teacher: it learns from the teacher's turn-averaged answers (soft targets: how sure, and which turns it confuses)
on many augmented views of the training photos, mixed with the true turn. The teacher runs once per upright view
(its four turned passes answer all four turns of that view), and the views are kept in memory as uint8 pixels, so
the student's epochs cost only its own forward and backward passes (about 9 ms an item on 2 CPU cores at 160 px).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import ConcatDataset, Subset

from food_rotation.rotation_model import CLASSES, RotationNet, for_inference
from food_rotation.training.evaluate import load_model
from food_rotation.training.rotation_data import RotatedPhotos, augment, find_photos, loader
from food_rotation.training.train import save_atomically
from food_rotation.training.train_end_to_end import held_out_accuracy
from food_rotation.training.train_pretrained import folder_groups

TURNS = len(CLASSES)


def upright_views(groups: Sequence[tuple[str, Sequence[Path], int]], image_size: int, rounds: int) -> ConcatDataset:
    """Each group's photos upright and freshly augmented, `views` x `rounds` times over."""
    parts = []
    for _, photos, views in groups:
        upright = RotatedPhotos(photos, image_size, augment)
        parts += [Subset(upright, range(0, len(upright), TURNS)) for _ in range(views * rounds)]
    return ConcatDataset(parts)


@torch.inference_mode()
def teach(teacher: nn.Module, views: ConcatDataset, workers: int) -> tuple[Tensor, Tensor]:
    """(uint8 pixels (N, 3, S, S), the teacher's turn-averaged scores (N, 4)) of every upright view."""
    pixels, scores = [], []
    for batch, _ in loader(views, 32, False, workers, 0):
        pixels.append(batch)
        scores.append(teacher(batch.contiguous(memory_format=torch.channels_last)).float())
    return torch.cat(pixels), torch.cat(scores)


def turned(pixels: Tensor, scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """All four turns of upright views, with the teacher's scores and the true label moved to each turn's frame.

    A view turned k quarters counter-clockwise needs k fewer to be upright, so it is class -k, and the
    teacher's class j + k speaks for its class j (the inverse of RotationNet's turn averaging)."""
    images = torch.cat([torch.rot90(pixels, k, (2, 3)) for k in range(TURNS)])
    targets = torch.cat([torch.roll(scores, -k, dims=1) for k in range(TURNS)])
    labels = torch.cat([torch.full((len(pixels),), -k % TURNS) for k in range(TURNS)])
    return images.contiguous(memory_format=torch.channels_last), targets, labels


def distillation_loss(logits: Tensor, teacher: Tensor, labels: Tensor, tau: float, alpha: float) -> Tensor:
    """alpha x the soft-target KL at temperature tau (scaled by tau^2, Hinton et al.) + the rest x cross-entropy."""
    soft = F.kl_div(F.log_softmax(logits / tau, 1), F.log_softmax(teacher / tau, 1), log_target=True,
                    reduction="batchmean") * tau * tau
    return alpha * soft + (1 - alpha) * F.cross_entropy(logits, labels)


def distil(student: RotationNet, pixels: Tensor, scores: Tensor, held_out: Sequence[Path],
           args: argparse.Namespace) -> list[dict[str, float]]:
    """Train `student` in place on the cached views; held-out accuracy after every epoch (the last is kept)."""
    student = student.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.05)
    steps = (len(pixels) + args.batch_size - 1) // args.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * steps,
                                                   pct_start=0.15)
    generator = torch.Generator().manual_seed(args.seed)
    history = []
    for epoch in range(1, args.epochs + 1):
        student.train()
        order, correct, started = torch.randperm(len(pixels), generator=generator), 0, time.perf_counter()
        for start in range(0, len(order), args.batch_size):
            index = order[start:start + args.batch_size]
            images, targets, labels = turned(pixels[index], scores[index])
            logits = student(images)
            loss = distillation_loss(logits, targets, labels, args.tau, args.alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == labels).sum())
        held = held_out_accuracy(student, held_out, args.image_size)
        history.append({"epoch": epoch, "train_acc": correct / (TURNS * len(pixels)), "val_acc": held})
        print(f"epoch {epoch}: train_acc={history[-1]['train_acc']:.4f} held-out={held:.4f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return history


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="DATA/train/<kind> photos; DATA/heldout/real scored every epoch")
    parser.add_argument("--teacher", type=Path, default=Path("weights/food_rotation_lite0.pth"))
    parser.add_argument("--init", type=Path, help="the student's starting weights (a RotationNet state_dict)")
    parser.add_argument("--arch", default="mobilenet_v3_small")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=3, help="augmented view sets the teacher labels")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="upright views per step (x4 turns)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--tau", type=float, default=2.0, help="distillation temperature")
    parser.add_argument("--alpha", type=float, default=0.7, help="weight of the teacher's soft targets")
    parser.add_argument("--turn-averaging", action="store_true", help="serve it turn-averaged (as the teacher)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="loader processes while the teacher labels")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/student.tar"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    teacher_model, teacher_size = load_model(args.teacher)
    if teacher_size != args.image_size or not teacher_model.turn_averaging:
        sys.exit(f"the teacher must be turn-averaged at {args.image_size} px (it is {teacher_size} px)")
    teacher = for_inference(teacher_model, torch.device("cpu"), channels_last=True, freeze=True,
                            image_size=args.image_size)
    started = time.perf_counter()
    pixels, scores = teach(teacher, upright_views(folder_groups(args.data), args.image_size, args.rounds),
                           args.workers)
    print(f"teacher labelled {len(pixels)} views in {time.perf_counter() - started:.0f} s, "
          f"{float((scores.argmax(1) == 0).float().mean()):.4f} of them upright by its argmax", flush=True)
    student = RotationNet(args.arch)
    if args.init is not None:
        student.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    held_out_folder = args.data / "heldout" / "real"
    history = distil(student, pixels, scores, find_photos(held_out_folder) if held_out_folder.is_dir() else [], args)
    saved = {"epoch": args.epochs, "state_dict": student.eval().state_dict(), "arch": args.arch,
             "classes": list(CLASSES), "image_size": args.image_size, "train_acc": history[-1]["train_acc"],
             "val_acc": history[-1]["val_acc"], "seed": args.seed, "turn_averaging": args.turn_averaging,
             "recipe": "distilled",
             "teacher": str(args.teacher), "options": {k: str(v) for k, v in vars(args).items()},
             "history": history, "train_s": round(time.perf_counter() - started)}
    save_atomically(saved, args.out)
    print(f"saved {args.out} in {saved['train_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
