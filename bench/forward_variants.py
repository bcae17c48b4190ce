"""The forward pass alone, in the variants issue #5 lists: eager, channels_last, TorchScript, torch.compile,
dynamic int8 quantisation; per batch of 4 at 224 px on one thread (as one worker runs it), with the accuracy of
each on the held-out demo scenes (the eight photos of samples/gate/ at four turns: 32 images).

    .venv/bin/python bench/forward_variants.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch

from rotation_model import RotationNet
from scripts.rotation_data import RotatedPhotos, find_photos
from scripts.serving import ROOT

WEIGHTS = ROOT / "weights" / "food_rotation_demo.pth"


def timed(model: torch.nn.Module, batch: torch.Tensor, repeats: int = 30) -> float:
    with torch.inference_mode():
        for _ in range(5):
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


def main() -> int:
    torch.set_num_threads(1)
    info = json.loads(WEIGHTS.with_suffix(".json").read_text())
    eager = RotationNet(info["arch"])
    eager.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    eager.eval()
    data = RotatedPhotos(find_photos(ROOT / "samples" / "gate"), info["image_size"])
    batch = torch.stack([data[i][0] for i in range(4)])
    variants: dict[str, tuple[torch.nn.Module, torch.Tensor]] = {"eager": (eager, batch)}
    channels_last = RotationNet(info["arch"])
    channels_last.load_state_dict(eager.state_dict())
    variants["channels_last"] = (channels_last.eval().to(memory_format=torch.channels_last),
                                 batch.contiguous(memory_format=torch.channels_last))
    with torch.inference_mode():
        variants["TorchScript (trace + freeze)"] = (torch.jit.freeze(torch.jit.trace(eager, batch)), batch)
    variants["dynamic int8 (Linear)"] = (torch.ao.quantization.quantize_dynamic(eager, {torch.nn.Linear},
                                                                                 dtype=torch.qint8), batch)
    try:
        variants["torch.compile"] = (torch.compile(eager), batch)
    except Exception as exc:  # noqa: BLE001 - report, don't fail: the table says what could not run
        print(f"torch.compile unavailable: {exc}", file=sys.stderr)
    print("| forward variant (batch 4, 224 px, 1 thread) | ms per batch | accuracy on samples/gate x4 |")
    print("| --- | --- | --- |")
    for name, (model, inputs) in variants.items():
        try:
            ms = timed(model, inputs)
            acc = accuracy(model, data)
        except Exception as exc:  # noqa: BLE001
            print(f"| {name} | failed: {type(exc).__name__} | - |")
            continue
        print(f"| {name} | {ms:.1f} | {acc:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
