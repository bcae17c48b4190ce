"""Fine-tune the ImageNet-pretrained efficientnet_lite0 for the four turns, in minutes on two CPU cores.

    python scripts/train_pretrained.py data/rotation_set --out checkpoints/lite0.tar     (part of `make weights`)

The early blocks keep their ImageNet weights (edges, textures and parts are what they already know) and are run
once: each training photo is augmented into several views, turned four ways, and passed through them; their
outputs are cached (in memory, and in --cache-dir for the next run). Only the last two blocks and the head learn,
from the cache: an epoch costs 3.5 min here where the whole network would take about 25 (125 ms per image), which
is what makes a real-photo model trainable on two CPU cores.
The result is an ordinary checkpoint (scripts/extract_model_weight.py turns it into the served weights).

Data: the folders below DATA/train (each with its own number of views per photo: real photos are few and matter
most, so they get the most views). The held-out photos (DATA/heldout/real) are scored after every epoch; the last
epoch is kept, so that figure is not chosen on them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from food_rotation.rotation_model import CLASSES, DEFAULT_ARCH, DEFAULT_IMAGE_SIZE, LITE, RotationNet
from food_rotation.training.pretrained import imagenet_rotation_net
from food_rotation.training.rotation_data import RotatedPhotos, augment, find_photos, loader
from food_rotation.training.train import save_atomically
from food_rotation.training.train_end_to_end import EndToEnd, fine_tune_end_to_end, held_out_accuracy

VIEWS = {"real": 8, "composite": 1, "text": 1, "scenes": 1}  # augmented views per photo and epoch of the cache


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="train/<kind>/ and heldout/real/ (real_scenes.py)")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/lite0.tar"))
    parser.add_argument("--arch", choices=LITE, default=DEFAULT_ARCH)
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE)
    parser.add_argument("--frozen-blocks", type=int, help="efficientnet blocks kept at ImageNet weights "
                        "(default 5; 0 with --end-to-end)")
    parser.add_argument("--views-scale", type=float, default=1.0, help="multiply every kind's views (quick runs)")
    parser.add_argument("--epochs", type=int, help="default 4; 12 with --end-to-end")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, help="default 2e-3; 1e-3 with --end-to-end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache-dir", type=Path, default=Path("checkpoints/cache"),
                        help="keep the frozen blocks' outputs here for the next run with the same data")
    parser.add_argument("--no-turn-averaging", dest="turn_averaging", action="store_false",
                        help="serve one forward pass per photo, not four (faster, less accurate)")
    parser.add_argument("--init", type=Path, help="start from these weights (.pth) instead of ImageNet's")
    parser.add_argument("--end-to-end", action="store_true",
                        help="fresh augmentations every epoch, every unfrozen block learning "
                             "(train_end_to_end.py); --frozen-blocks then defaults to 0")
    parser.add_argument("--backbone-lr-scale", type=float, default=EndToEnd.backbone_lr_scale)
    parser.add_argument("--workers", type=int, default=EndToEnd.workers, help="loader processes (--end-to-end)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


class Split(nn.Module):
    """The network cut in two: a frozen `stem` (run once per view) and the `top` that learns."""

    def __init__(self, model: RotationNet, frozen_blocks: int) -> None:
        super().__init__()
        net = model.backbone
        self.model = model
        self.stem = nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:frozen_blocks])
        self.top = nn.Sequential(*net.blocks[frozen_blocks:], net.conv_head, net.bn2, model.head)
        for parameter in self.stem.parameters():
            parameter.requires_grad_(False)

    @torch.inference_mode()
    def features(self, pixels: Tensor) -> Tensor:
        self.stem.eval()
        pixels = pixels.contiguous(memory_format=torch.channels_last)  # half the time of NCHW on this CPU
        return self.stem(self.model.normalise(pixels)).to(torch.float16)


def cache(split: Split, groups: Sequence[tuple[str, Sequence[Path], int]], image_size: int,
          seed: int) -> tuple[Tensor, Tensor]:
    """The frozen blocks' outputs for `views` augmented views of every photo at the four turns, and their labels."""
    features, labels = [], []
    for kind, photos, views in groups:
        started = time.perf_counter()
        for view in range(views):
            random.seed(seed * 1000 + view)
            for pixels, batch_labels in loader(RotatedPhotos(photos, image_size, augment), 64, False, 1,
                                               seed + view):
                features.append(split.features(pixels))
                labels.append(batch_labels)
        print(f"cached {kind}: {len(photos)} photos x {views} views x {len(CLASSES)} turns "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return torch.cat(features), torch.cat(labels)


def folder_groups(data: Path, views_scale: float = 1.0) -> list[tuple[str, list[Path], int]]:
    """(kind, photos, views) for each DATA/train/<kind> folder that exists."""
    return [(kind, find_photos(data / "train" / kind), max(1, round(views * views_scale)))
            for kind, views in VIEWS.items() if (data / "train" / kind).is_dir()]


@dataclass(frozen=True)
class FineTuning:
    """How the top of the network learns; `frozen_blocks` of efficientnet_lite0's 7 stay as they are."""

    image_size: int = DEFAULT_IMAGE_SIZE
    frozen_blocks: int = 5
    epochs: int = 4
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0


def cached(split: Split, groups: Sequence[tuple[str, Sequence[Path], int]], options: FineTuning,
           cache_dir: Path | None) -> tuple[Tensor, Tensor]:
    """`cache`, kept in `cache_dir` under a key of everything it depends on (photos, views, size, blocks, seed,
    the frozen weights), so trying another top or schedule does not pay for the frozen blocks again."""
    if cache_dir is None:
        return cache(split, groups, options.image_size, options.seed)
    key = hashlib.sha256(repr((
        [(kind, [str(p) for p in photos], views) for kind, photos, views in groups], options.image_size,
        options.frozen_blocks, options.seed, [float(t.double().sum()) for t in split.stem.state_dict().values()],
    )).encode()).hexdigest()[:16]
    path = cache_dir / f"features-{key}.pt"
    if path.is_file():
        print(f"cache: reusing {path}", flush=True)
        stored = torch.load(path, weights_only=True)
        return stored["features"], stored["labels"]
    features, labels = cache(split, groups, options.image_size, options.seed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"features": features, "labels": labels}, path)
    return features, labels


def fine_tune(model: RotationNet, groups: Sequence[tuple[str, Sequence[Path], int]], held_out: Sequence[Path],
              options: FineTuning, cache_dir: Path | None = None) -> list[dict[str, float]]:
    """Train `model`'s top in place on cached views of `groups`; held-out accuracy after every epoch."""
    torch.manual_seed(options.seed)
    split = Split(model.to(memory_format=torch.channels_last), options.frozen_blocks)
    started = time.perf_counter()
    features, labels = cached(split, groups, options, cache_dir)
    print(f"cache: {len(labels)} items, {features.numel() * 2 / 2**20:.0f} MiB, "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    trainable = [p for p in split.top.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=0.05)
    steps = options.epochs * ((len(labels) + options.batch_size - 1) // options.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=steps, pct_start=0.15)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.05)
    generator = torch.Generator().manual_seed(options.seed)
    history = []
    for epoch in range(1, options.epochs + 1):
        split.top.train()
        order = torch.randperm(len(labels), generator=generator)
        correct, epoch_started = 0, time.perf_counter()
        for start in range(0, len(order), options.batch_size):
            index = order[start:start + options.batch_size]
            logits = split.top(features[index].float().contiguous(memory_format=torch.channels_last))
            loss = criterion(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            correct += int((logits.argmax(1) == labels[index]).sum())
        held = held_out_accuracy(model, held_out, options.image_size)
        history.append({"epoch": epoch, "train_acc": correct / len(labels), "val_acc": held})
        print(f"epoch {epoch}: train_acc={correct / len(labels):.4f} held-out={held:.4f} "
              f"({time.perf_counter() - epoch_started:.0f} s)", flush=True)
    model.eval()
    return history


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def train(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    if args.init is not None:
        model = RotationNet(args.arch)
        model.load_state_dict(torch.load(args.init, map_location="cpu", weights_only=True))
    else:
        model = imagenet_rotation_net(args.arch)
    held_out_folder = args.data / "heldout" / "real"
    held_out = find_photos(held_out_folder) if held_out_folder.is_dir() else []
    groups = folder_groups(args.data, args.views_scale)
    started = time.perf_counter()
    if args.end_to_end:
        options = EndToEnd(args.image_size, _or(args.frozen_blocks, 0), _or(args.epochs, 12), args.batch_size,
                           _or(args.lr, 1e-3), args.backbone_lr_scale, args.seed, args.workers)
        history = fine_tune_end_to_end(model, groups, held_out, options, torch.device(args.device))
    else:
        options = FineTuning(args.image_size, _or(args.frozen_blocks, 5), _or(args.epochs, 4), args.batch_size,
                             _or(args.lr, 2e-3), args.seed)
        history = fine_tune(model, groups, held_out, options, args.cache_dir)
    saved = {
        "epoch": options.epochs, "state_dict": model.state_dict(), "arch": args.arch,
        "classes": list(CLASSES), "image_size": args.image_size, "train_acc": history[-1]["train_acc"],
        "val_acc": history[-1]["val_acc"], "seed": args.seed, "frozen_blocks": options.frozen_blocks,
        "turn_averaging": args.turn_averaging, "recipe": type(options).__name__, "options": asdict(options),
        "history": history, "train_s": round(time.perf_counter() - started),
    }
    save_atomically(saved, args.out)
    print(f"saved {args.out} in {saved['train_s']} s")
    return saved


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
