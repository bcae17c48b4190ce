"""Accuracy per class of a rotation model on a folder of upright photos, and a confusion-matrix PNG.

    python scripts/evaluate.py weights/food_rotation_demo.pth data/demo_heldout --matrix confusion.png

The model is a weights-only .pth (with its .json from scripts/extract_model_weight.py) or a training
checkpoint .tar. Every photo is scored at all four turns.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from rotation_model import CLASSES, DEFAULT_IMAGE_SIZE, RotationNet
from scripts.extract_model_weight import CheckpointError, extract, load_checkpoint
from scripts.rotation_data import RotatedPhotos, accuracy, confusion_matrix, find_photos, loader


def load_model(path: Path) -> tuple[RotationNet, int]:
    """(model, image size) from a .tar checkpoint or a .pth with its .json beside it."""
    if path.suffix == ".tar":
        state_dict, info = extract(load_checkpoint(path), None)
    else:
        info = json.loads(path.with_suffix(".json").read_text())
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    model = RotationNet(info["arch"])
    model.load_state_dict(state_dict)
    return model.eval(), int(info.get("image_size", DEFAULT_IMAGE_SIZE))


def draw_matrix(counts: torch.Tensor, title: str) -> Image.Image:
    """Rows: true turn; columns: predicted turn; darker cells hold a larger share of their row."""
    cell, margin = 90, 110
    size = margin + cell * len(CLASSES) + 20
    img = Image.new("RGB", (size, size + 30), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=16)
    draw.text((10, 8), title, fill="black", font=font)
    draw.text((margin, 38), "predicted model_degree", fill="black", font=font)
    draw.text((6, margin - 28), "true", fill="black", font=font)
    for i, degree in enumerate(CLASSES):
        draw.text((margin + i * cell + 30, margin - 24), str(degree), fill="black", font=font)
        draw.text((40, margin + i * cell + 35), str(degree), fill="black", font=font)
        row_total = max(1, int(counts[i].sum()))
        for j in range(len(CLASSES)):
            share = int(counts[i, j]) / row_total
            shade = int(255 * (1 - share))
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell, margin + (i + 1) * cell)
            draw.rectangle(box, fill=(shade, shade, 255), outline="gray")
            draw.text((box[0] + 20, box[1] + 35), str(int(counts[i, j])), fill="black" if share < 0.5 else "white",
                      font=font)
    return img


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="weights .pth (with its .json) or training checkpoint .tar")
    parser.add_argument("data_dir", type=Path, help="folder of upright photos")
    parser.add_argument("--matrix", type=Path, help="write the confusion matrix here (PNG)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model, image_size = load_model(args.model)
        photos = find_photos(args.data_dir)
    except (CheckpointError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = confusion_matrix(model, loader(RotatedPhotos(photos, image_size), args.batch_size, False, 0, 0))
    per_class = {str(degree): float(counts[i, i]) / max(1, int(counts[i].sum())) for i, degree in enumerate(CLASSES)}
    overall = accuracy(counts)
    print(f"{len(photos)} photos x {len(CLASSES)} turns, overall accuracy {overall:.4f}")
    for degree, value in per_class.items():
        print(f"  model_degree {degree:>3}: {value:.4f}")
    if args.matrix:
        draw_matrix(counts, f"{args.model.name} on {args.data_dir.name}: {overall:.2%}").save(args.matrix)
        print(f"confusion matrix: {args.matrix}")
    if args.json:
        args.json.write_text(json.dumps({"photos": len(photos), "accuracy": overall, "per_class": per_class,
                                         "confusion": counts.tolist()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
