"""The feedback loop, measured end to end -> bench/FEEDBACK_LOOP.md.

A private TorchServe + proxy (free ports, temporary folders) serves the shipped weights (or --weights) as 1.0.
Photos of a kind they never saw are predicted and corrected through the proxy, as the admin page does it (POST
/predictions, then POST /feedback with the right turn and the service's answer); `scripts/retrain.py` then turns
the collected dataset into 2.0, deployed as a canary through the smoke gate. Reported: how long retraining takes
on this machine, and how 1.0 and 2.0 (each called by explicit version through the proxy) do on the held-out
corrections, which 2.0 never trained on, and on the demo-style gate samples (has it forgotten them?).

The new kind of photo: a demo scene shot close up, in a dim, warm-lit room, with a noisy phone sensor.

    .venv/bin/python bench/feedback_loop.py [--weights weights/food_rotation_demo.pth] [--photos 200] [--epochs 4]
        [--demo-scenes 200] [--cross-validate 5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
from bench_instruments import scratch
from PIL import Image, ImageEnhance

from auth_plugin.control.smoke_gate import TURNS, validation_images
from auth_plugin.feedback.datasets import DatasetStore
from food_rotation.training.make_demo_data import render_scene
from operations.gateway_process import Proxy
from operations.processes import free_ports
from operations.torchserve_process import ROOT, TorchServe

WEIGHTS = ROOT / "weights" / "food_rotation_lite0.pth"  # what `make serve` serves


def dim_closeup(seed: int) -> Image.Image:
    """Upright: part of a demo scene, enlarged, darker, warmer and noisier than anything in the demo set."""
    rng = random.Random(seed)
    img = render_scene(seed)
    width, height = img.size
    share = rng.uniform(0.35, 0.6)
    crop_w, crop_h = int(width * share), int(height * share)
    left, top = rng.randint(0, width - crop_w), rng.randint(int((height - crop_h) * 0.3), height - crop_h)
    img = img.crop((left, top, left + crop_w, top + crop_h)).resize((crop_w * 2, crop_h * 2),
                                                                    Image.Resampling.BICUBIC)
    pixels = np.asarray(ImageEnhance.Brightness(img).enhance(rng.uniform(0.25, 0.45)), dtype=np.float32)
    pixels = pixels * np.array([1.25, 1.0, 0.7]) + np.random.default_rng(seed).normal(0, 12, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=88)
    return out.getvalue()


def accuracy(url: str, token: str, photos: list[Path]) -> float:
    """Each upright photo at its four turns (made as the smoke gate makes them), predicted through the proxy."""
    images = validation_images(photos)
    correct = 0
    for data, degree in images:
        answer = requests.post(url, data=data, timeout=60,
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "image/jpeg"})
        answer.raise_for_status()
        correct += answer.json()["model_degree"] == degree
    return correct / len(images)


@dataclass
class Loop:
    """A private TorchServe + proxy serving `weights` as 1.0, with its dataset folder and two tokens."""

    base: Path
    proxy: Proxy
    model_store: Path
    datasets: Path
    cook: str  # predict scope: predicts and corrects, as the admin page's Predict view does
    admin: str

    @property
    def predict_url(self) -> str:
        return f"{self.proxy.url}/predictions/food_rotation"

    def correct(self, photos: list[tuple[Image.Image, int]]) -> int:
        """Predict each (upright photo, turn) through the proxy, then send the correction; the number served right."""
        auth = {"Authorization": f"Bearer {self.cook}"}
        served_right = 0
        for upright, degree in photos:
            photo = jpeg(upright.rotate(-degree, expand=True))
            served = requests.post(self.predict_url, data=photo, headers={**auth, "Content-Type": "image/jpeg"},
                                   timeout=60).json()
            served_right += served["model_degree"] == degree
            stored = requests.post(f"{self.proxy.url}/feedback", files={"image": ("photo.jpg", photo, "image/jpeg")},
                                   data={"true_degree": str(degree), "model_degree": str(served["model_degree"]),
                                         "model_version": served["model_version"]}, headers=auth, timeout=60)
            assert stored.status_code == 201, stored.text
        return served_right

    def retrain(self, dataset: str, *options: str) -> tuple[subprocess.CompletedProcess[str], float]:
        """The retrain command line (`make retrain`, scripts/retrain.py) as an operator runs it (deploys through this
        proxy); its result and seconds."""
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "operations.retrain", "--dataset", dataset,
             "--datasets-dir", str(self.datasets), "--model-store", str(self.model_store),
             "--weights-dir", str(self.base / "weights"), "--url", self.proxy.url, "--token", self.admin, *options],
            cwd=ROOT, env={**os.environ, "TQDM_DISABLE": "1"}, capture_output=True, text=True)
        print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
        return result, time.perf_counter() - started

    def accuracy(self, version: str, photos: list[Path]) -> float:
        return accuracy(f"{self.predict_url}/{version}", self.cook, photos)


@contextlib.contextmanager
def serving_loop(weights: Path) -> Iterator[Loop]:
    with scratch("feedback-loop-") as base:
        store = base / "model_store"
        subprocess.run([str(ROOT / "scripts" / "archive.sh"), "--weights", str(weights), "--version", "1.0",
                        "--export-path", str(store)], check=True, capture_output=True)
        server = TorchServe.on_free_ports(base / "torchserve", store)
        (port,) = free_ports(1)
        datasets = base / "datasets"
        proxy = Proxy(home=base / "proxy", url=f"http://127.0.0.1:{port}", torchserve=server,
                      extra_env={"PROXY_DATASETS_DIR": str(datasets)})
        try:
            server.start()
            server.wait_ready(min_workers=2, timeout=300)
            proxy.start()
            proxy.wait_ready()
            yield Loop(base, proxy, store, datasets, proxy.saved_token("cook_token", "cook", ["predict"]),
                       proxy.saved_token("admin_token", "admin", ["admin", "predict"]))
        finally:
            proxy.stop()
            server.stop()


def trained_seconds(stdout: str) -> float:
    line = next((line for line in stdout.splitlines() if line.startswith("trained in ")), "")
    return float(line.split()[2]) if line else float("nan")


def cross_validation_line(stdout: str) -> str:
    """retrain.py's summary of its folds (--cross-validate), or nothing."""
    return next((line for line in stdout.splitlines() if line.startswith("cross-validation, ")), "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="served as 1.0 and fine-tuned into 2.0")
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--demo-scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=40_000, help="first scene seed of the new kind of photo")
    parser.add_argument("--cross-validate", type=int, default=0, metavar="K", help="passed to retrain.py")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "FEEDBACK_LOOP.md")
    args = parser.parse_args(argv)
    served = args.weights.name

    with serving_loop(args.weights) as loop:
        photos = [(dim_closeup(args.seed + index), random.Random(args.seed + index).choice(TURNS))
                  for index in range(args.photos)]
        started = time.perf_counter()
        served_right = loop.correct(photos)
        collect_s = time.perf_counter() - started
        split = DatasetStore(loop.datasets, 100_000_000).split("feedback-1")
        retrain, retrain_s = loop.retrain("feedback-1", "--epochs", str(args.epochs), "--demo-scenes",
                                          str(args.demo_scenes), "--cross-validate", str(args.cross_validate))
        train_s = trained_seconds(retrain.stdout)
        deployed = retrain.returncode == 0
        gate_samples = sorted((ROOT / "samples" / "gate").glob("*.jpg"))
        rows = [(f"1.0 ({served})", "1.0")] + ([("2.0 (retrained)", "2.0")] if deployed else [])
        results = {label: (loop.accuracy(version, split.held_out), loop.accuracy(version, gate_samples))
                   for label, version in rows}

    command = "`.venv/bin/python bench/feedback_loop.py" + "".join(
        f" --{name} {value}" for name, value, default in (
            ("weights", args.weights, WEIGHTS), ("photos", args.photos, 200), ("epochs", args.epochs, 4),
            ("demo-scenes", args.demo_scenes, 200), ("cross-validate", args.cross_validate, 0)) if value != default)
    folds = cross_validation_line(retrain.stdout)
    lines = [
        "# The feedback loop, measured",
        "",
        f"Reproduce: {command}`, with nothing else running ({os.cpu_count()} cores, CPU only).",
        "",
        f"- {args.photos} photos of a new kind (demo scenes shot close up, dim warm light, sensor noise), each turned "
        f"0/90/180/270 at random, predicted and corrected through the proxy in {collect_s:.0f} s; the served "
        f"{served} got **{served_right}/{args.photos}** right.",
        f"- Dataset feedback-1: {len(split.train)} photos trained on, {len(split.held_out)} held out (by sha256); "
        f"{args.demo_scenes} demo scenes mixed in; {args.epochs} epochs fine-tuning {served}.",
        *([f"- retrain.py's {folds}"] if folds else []),
        f"- `make retrain` (= scripts/retrain.py) took **{retrain_s:.0f} s** in all: training {train_s:.0f} s, then "
        "weights extracted, archived as 2.0, registered, gated and deployed as a 10 % canary"
        + ("." if deployed else f"; **the deploy was refused**: {retrain.stderr.strip().splitlines()[-2]}"),
        "",
        "Accuracy through the proxy, each version called explicitly, every photo at its four turns:",
        "",
        f"| version | held-out corrections ({len(split.held_out)} x 4) | gate samples, demo style "
        f"({len(gate_samples)} x 4) |",
        "|---|---|---|",
        *[f"| {label} | {held:.3f} | {gate:.3f} |" for label, (held, gate) in results.items()],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if deployed else 1


if __name__ == "__main__":
    sys.exit(main())
