"""The self-supervised rotation data set: any folder of upright photos, each seen at all four turns.

Photos are decoded by the handler's own `photo_io`, so training sees exactly what serving sees.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageEnhance, ImageFilter
from torch.utils.data import DataLoader, Dataset

from food_rotation.photo_io import load_upright, turn
from food_rotation.rotation_model import CLASSES, to_pixels

PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
MAX_TRAINING_PIXELS = 200_000_000


def find_photos(root: Path) -> list[Path]:
    """Every jpg/png/webp below `root`, in a stable order (the split must not depend on the file system)."""
    photos = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise FileNotFoundError(f"no .jpg/.jpeg/.png/.webp photos under {root}")
    return photos


def split_by_photo(photos: Sequence[Path], val_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Split photos, never rotated copies: the four turns of one photo all land on the same side."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    shuffled = list(photos)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(len(shuffled) * val_fraction))
    if n_val >= len(shuffled):
        raise ValueError(f"{len(shuffled)} photos are too few to split off {val_fraction:.0%} for validation")
    return shuffled[n_val:], shuffled[:n_val]


def augment(img: Image.Image) -> Image.Image:
    """Label-preserving changes only: crops, a left-right mirror, colour; never a vertical flip or a turn."""
    width, height = img.size
    scale = random.uniform(0.65, 1.0)
    crop_w = max(8, int(width * scale * random.uniform(0.9, 1.1)))
    crop_h = max(8, int(height * scale * random.uniform(0.9, 1.1)))
    crop_w, crop_h = min(crop_w, width), min(crop_h, height)
    left, top = random.randint(0, width - crop_w), random.randint(0, height - crop_h)
    img = img.crop((left, top, left + crop_w, top + crop_h))
    if random.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(random.uniform(0.7, 1.3))
    if random.random() < 0.1:
        img = img.convert("L").convert("RGB")
    if random.random() < 0.15:
        img = img.filter(ImageFilter.GaussianBlur(random.uniform(0.3, 1.5)))
    return img


class RotatedPhotos(Dataset):
    """Item 4*i + k is photo i turned so that a counter-clockwise turn of CLASSES[k] makes it upright."""

    def __init__(self, photos: Sequence[Path], image_size: int,
                 transform: Callable[[Image.Image], Image.Image] | None = None) -> None:
        self.photos = list(photos)
        self.image_size = image_size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.photos) * len(CLASSES)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        photo, label = divmod(index, len(CLASSES))
        img, _ = load_upright(self.photos[photo].read_bytes(), int(self.image_size * 1.2), MAX_TRAINING_PIXELS)
        if self.transform is not None:
            img = self.transform(img)
        return to_pixels(turn(img, -CLASSES[label]), self.image_size), label


def loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int, seed: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0)


@torch.inference_mode()
def confusion_matrix(model: torch.nn.Module, batches: DataLoader) -> torch.Tensor:
    """counts[true, predicted] over the whole loader."""
    model.eval()
    counts = torch.zeros(len(CLASSES), len(CLASSES), dtype=torch.long)
    for pixels, labels in batches:
        predicted = model(pixels).argmax(dim=1)
        counts += torch.bincount(labels * len(CLASSES) + predicted, minlength=len(CLASSES) ** 2).view_as(counts)
    return counts


def accuracy(counts: torch.Tensor) -> float:
    return float(counts.diag().sum()) / max(1, int(counts.sum()))
