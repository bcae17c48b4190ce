"""Two datasets, one after the other: does the next version keep what the first one taught? -> bench/TWO_DATASETS.md

Corrections of one new kind of photo go to feedback-1 (dim, warm close-ups, as in bench/feedback_loop.py); the
dataset is closed, and corrections of a second kind (grey, vignetted shots) go to feedback-2. Then
`scripts/retrain.py` runs twice: `--dataset feedback-2` (the active dataset alone) -> 2.0, and `--dataset all`
(the default) -> 3.0, each deployed as a canary through the smoke gate. Every version is called
explicitly through the proxy on both datasets' held-out corrections (never trained on) and the gate samples.

    .venv/bin/python bench/two_datasets.py [--photos 120] [--epochs 4] [--demo-scenes 200]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import requests
from feedback_loop import dim_closeup, serving_loop, trained_seconds
from PIL import Image, ImageOps

from auth_plugin.control.smoke_gate import TURNS
from auth_plugin.feedback.datasets import DatasetStore
from food_rotation.training.make_demo_data import render_scene
from operations.torchserve_process import ROOT


def grey_vignette(seed: int) -> Image.Image:
    """Upright: a demo scene in grey, contrast stretched, darkened towards the corners (a monochrome phone
    filter). Unlike the demo set and unlike dim_closeup: the demo weights get about a quarter of these right."""
    rng = random.Random(seed)
    img = ImageOps.autocontrast(ImageOps.grayscale(render_scene(seed)), cutoff=rng.uniform(5, 15)).convert("RGB")
    height, width = img.height, img.width
    rows, cols = np.mgrid[0:height, 0:width]
    radius = np.hypot((cols - width / 2) / (width / 2), (rows - height / 2) / (height / 2))
    pixels = np.asarray(img, dtype=np.float32) * np.clip(1.2 - 0.9 * radius, 0.05, 1.0)[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=120, help="corrections per dataset")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--demo-scenes", type=int, default=200)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "TWO_DATASETS.md")
    args = parser.parse_args(argv)
    kinds = {"feedback-1": ("dim, warm close-ups", dim_closeup, 40_000),
             "feedback-2": ("grey, vignetted shots", grey_vignette, 50_000)}
    options = ("--epochs", str(args.epochs), "--demo-scenes", str(args.demo_scenes))

    with serving_loop() as loop:
        served_right = {}
        for name, (_, make, seed) in kinds.items():
            if name != "feedback-1":
                opened = requests.post(f"{loop.proxy.url}/datasets", json={}, timeout=30,
                                       headers={"Authorization": f"Bearer {loop.admin}"})
                assert opened.status_code == 201 and opened.json()["name"] == name, opened.text
            photos = [(make(seed + i), random.Random(seed + i).choice(TURNS)) for i in range(args.photos)]
            served_right[name] = loop.correct(photos)
        store = DatasetStore(loop.datasets, 100_000_000)
        held_out = {name: store.split(name).held_out for name in kinds}
        runs = {}
        for version, dataset in (("2.0", "feedback-2"), ("3.0", "all")):
            result, seconds = loop.retrain(dataset, *options)
            runs[version] = (dataset, result.returncode == 0, seconds, trained_seconds(result.stdout),
                             (result.stderr.strip().splitlines() or [""])[-1])
        gate_samples = sorted((ROOT / "samples" / "gate").glob("*.jpg"))
        versions = ["1.0"] + [version for version, run in runs.items() if run[1]]
        table = {version: [loop.accuracy(version, photos) for photos in (*held_out.values(), gate_samples)]
                 for version in versions}

    labels = {"1.0": "1.0 (demo weights)", "2.0": "2.0 (`DATASET=feedback-2`, the active one alone)",
              "3.0": "3.0 (`DATASET=all`, the default)"}
    lines = [
        "# Two datasets: what `DATASET=all` keeps",
        "",
        f"Reproduce: `.venv/bin/python bench/two_datasets.py`, with nothing else running ({os.cpu_count()} cores, "
        "CPU only).",
        "",
        *[f"- {name}: {args.photos} {kinds[name][0]}, each turned 0/90/180/270 at random, predicted and corrected "
          f"through the proxy (the served 1.0 got {served_right[name]}/{args.photos} right); {len(held_out[name])} "
          "held out by sha256." for name in kinds],
        "- feedback-1 was closed before feedback-2 was collected, as on the admin page's Data view.",
        *[f"- {version}: `scripts/retrain.py --dataset {dataset}` ({args.demo_scenes} demo scenes mixed in, "
          f"{args.epochs} epochs from the demo weights): {seconds:.0f} s in all, training {train_s:.0f} s; "
          + ("deployed as a canary through the smoke gate." if deployed else f"**refused**: {reason}")
          for version, (dataset, deployed, seconds, train_s, reason) in runs.items()],
        "",
        "Accuracy through the proxy, each version called explicitly, every photo at its four turns:",
        "",
        f"| version | feedback-1 held out ({len(held_out['feedback-1'])} x 4) | feedback-2 held out "
        f"({len(held_out['feedback-2'])} x 4) | gate samples ({len(gate_samples)} x 4) |",
        "|---|---|---|---|",
        *[f"| {labels[version]} | " + " | ".join(f"{value:.3f}" for value in row) + " |"
          for version, row in table.items()],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if all(run[1] for run in runs.values()) else 1


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - started:.0f} s)")
    sys.exit(code)
