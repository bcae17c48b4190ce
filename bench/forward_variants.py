"""The forward pass alone, in its variants: eager, channels_last, TorchScript, torch.compile, dynamic int8
quantisation; per batch of 4 photos at 224 px on one thread (as one worker runs it), for the shipped model (turn
averaging included: 16 images through the network), with each variant's largest difference from eager's
probabilities and its accuracy on samples/gate/ at four turns.

    .venv/bin/python bench/forward_variants.py [--weights weights/food_rotation_lite0.pth]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from food_rotation.rotation_model import RotationNet
from food_rotation.training.rotation_data import RotatedPhotos, find_photos
from operations.torchserve_process import ROOT

WEIGHTS = ROOT / "weights" / "food_rotation_lite0.pth"


def timed(model: torch.nn.Module, batch: torch.Tensor, repeats: int = 15) -> float:
    with torch.inference_mode():
        for _ in range(3):
            model(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model(batch)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def accuracy(model: torch.nn.Module, data: RotatedPhotos) -> float:
    with torch.inference_mode():
        correct = sum(int(model(pixels.unsqueeze(0)).argmax()) == label for pixels, label in data)
    return correct / len(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=WEIGHTS)
    weights = parser.parse_args(argv).weights
    torch.set_num_threads(1)
    info = json.loads(weights.with_suffix(".json").read_text())

    def load() -> RotationNet:
        model = RotationNet(info["arch"], bool(info.get("turn_averaging")))
        model.load_state_dict(torch.load(weights, weights_only=True))
        return model.eval()

    eager = load()
    data = RotatedPhotos(find_photos(ROOT / "samples" / "gate"), info["image_size"])
    batch = torch.stack([data[i][0] for i in range(4)])
    variants: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {"eager": (eager, batch)}
    last = batch.contiguous(memory_format=torch.channels_last)
    variants["channels_last"] = (load().to(memory_format=torch.channels_last), last)
    with torch.inference_mode():
        variants["TorchScript (trace + freeze)"] = (torch.jit.freeze(torch.jit.trace(eager, batch)), batch)
        variants["channels_last + TorchScript"] = (
            torch.jit.freeze(torch.jit.trace(load().to(memory_format=torch.channels_last), last)), last)
    variants["dynamic int8 (Linear)"] = (torch.ao.quantization.quantize_dynamic(eager, {torch.nn.Linear},
                                                                                 dtype=torch.qint8), batch)
    try:
        variants["channels_last + torch.compile"] = (torch.compile(load().to(memory_format=torch.channels_last)),
                                                     last)
    except Exception as exc:  # noqa: BLE001 - report, don't fail: the table says what could not run
        print(f"torch.compile unavailable: {exc}", file=sys.stderr)
    with torch.inference_mode():
        reference = eager(batch).softmax(dim=1)
    print(f"| forward variant ({weights.name}, batch 4, {info['image_size']} px, 1 thread) | ms per batch "
          "| largest probability difference from eager | accuracy on samples/gate x4 |")
    print("| --- | --- | --- | --- |")
    for name, (model, inputs) in variants.items():
        try:
            ms = timed(model, inputs)
            with torch.inference_mode():
                difference = float((model(inputs).softmax(dim=1) - reference).abs().max())
            acc = accuracy(model, data)
        except Exception as exc:  # noqa: BLE001
            print(f"| {name} | failed: {type(exc).__name__} | - | - |")
            continue
        print(f"| {name} | {ms:.1f} | {difference:.1e} | {acc:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
