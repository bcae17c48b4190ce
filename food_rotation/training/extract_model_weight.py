"""Training checkpoint (.tar) -> weights-only .pth (the state_dict alone) plus a .json of what it is.

    python scripts/extract_model_weight.py checkpoints/demo.tar weights/food_rotation_demo.pth

The archive carries only learnt weights: no optimizer state, no pickled code (loaded with weights_only=True).
`module.` (DataParallel) and `_orig_mod.` (torch.compile) prefixes are stripped, and the result must load
strictly into the named architecture before anything is written. The .json beside the .pth (arch, image
size, accuracies, sha256) is what scripts/archive.sh puts into the archive's metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from food_rotation.rotation_model import ARCHS, CLASSES, DEFAULT_IMAGE_SIZE, RotationNet

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(Exception):
    """The input is not a training checkpoint of this project."""


def strip_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    def clean(key: str) -> str:
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        return key

    return {clean(key): value for key, value in state_dict.items()}


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {first_line}") from exc
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise CheckpointError(f"{path} has no 'state_dict': not a training checkpoint from scripts/train.py")
    return checkpoint


def extract(checkpoint: Mapping[str, Any], arch: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    arch = arch or checkpoint.get("arch")
    if arch not in ARCHS:
        raise CheckpointError(f"unknown architecture {arch!r}: pass --arch, one of {', '.join(ARCHS)}")
    classes = list(checkpoint.get("classes", CLASSES))
    if classes != list(CLASSES):
        raise CheckpointError(f"checkpoint classes {classes} differ from the served classes {list(CLASSES)}")
    state_dict = strip_prefixes(checkpoint["state_dict"])
    try:
        RotationNet(arch).load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights do not fit {arch}: {str(exc).splitlines()[0]}") from exc
    info = {
        "arch": arch,
        "classes": classes,
        "image_size": int(checkpoint.get("image_size", DEFAULT_IMAGE_SIZE)),
        **{key: checkpoint[key] for key in ("epoch", "train_acc", "val_acc", "best_acc", "turn_averaging")
           if key in checkpoint},
    }
    return state_dict, info


def extract_file(checkpoint: Path, out: Path, arch: str | None = None) -> dict[str, Any]:
    """Write `out` (the weights alone) and `out`.json (what archive.py reads) from a training checkpoint; the
    .json's content is returned. CheckpointError, and nothing written, when the checkpoint is not usable."""
    if not checkpoint.is_file():
        raise CheckpointError(f"{checkpoint} does not exist")
    state_dict, info = extract(load_checkpoint(checkpoint), arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # never leave a half-written weights file behind
    try:
        torch.save(state_dict, partial)
        info["sha256"] = hashlib.sha256(partial.read_bytes()).hexdigest()
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (.tar) written by scripts/train.py")
    parser.add_argument("out", type=Path, nargs="?", help="weights file (default: the checkpoint's name, .pth)")
    parser.add_argument("--arch", choices=ARCHS, help="architecture, when the checkpoint does not name it")
    args = parser.parse_args(argv)
    out: Path = args.out or args.checkpoint.with_suffix(".pth")
    try:
        info = extract_file(args.checkpoint, out, args.arch)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    before, after = args.checkpoint.stat().st_size, out.stat().st_size
    print(f"{args.checkpoint} ({before / 1e6:.2f} MB) -> {out} ({after / 1e6:.2f} MB, {info['arch']}, "
          f"val_acc={info.get('val_acc', 'n/a')}, sha256 {info['sha256'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
