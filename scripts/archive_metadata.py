"""Write the metadata.json that scripts/archive.sh puts inside a .mar: what this version is and where it came from."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path


def build(weights: Path, name: str, version: str) -> dict[str, object]:
    sidecar = weights.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{sidecar} is missing: make weights with scripts/extract_model_weight.py")
    info = json.loads(sidecar.read_text())
    return {
        "model_name": name,
        "version": version,
        "arch": info["arch"],
        "image_size": info["image_size"],
        "classes": info["classes"],
        "turn_averaging": bool(info.get("turn_averaging", False)),  # the temperature was fitted with it
        "train_acc": info.get("train_acc"),
        "val_acc": info.get("val_acc"),
        "epoch": info.get("epoch"),
        "weights_file": weights.name,
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # A retrained version: the collected datasets it learnt from, how many demo scenes were mixed in, its
        # accuracy on the datasets' held-out photos, and the version (and weights) it was fine-tuned from.
        **{key: info[key] for key in ("datasets", "demo_scenes", "heldout_acc", "heldout_acc_before", "init_version",
                                      "init_sha256") if key in info},
        **_calibration(info),
    }


def _calibration(info: dict[str, object]) -> dict[str, object]:
    """The fitted softmax temperature the handler reads, and how it was fitted; checked here, not at model load."""
    carried = {key: info[key] for key in ("temperature", "calibration") if info.get(key) is not None}
    temperature = carried.get("temperature", 1.0)
    number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not (number and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature in the weights' .json must be a positive number, got {temperature!r}")
    if "calibration" in carried and not isinstance(carried["calibration"], dict):
        raise ValueError("calibration in the weights' .json must be an object")
    return carried


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        metadata = build(args.weights, args.name, args.version)
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(metadata, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
