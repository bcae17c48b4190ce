"""Model archives written directly as zips: what read_archive and served_weights open, without the archiver."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import torch

from food_rotation.rotation_model import CLASSES, RotationNet


def state_bytes(arch: str = "mobilenet_v3_small") -> bytes:
    buffer = io.BytesIO()
    torch.save(RotationNet(arch).state_dict(), buffer)
    return buffer.getvalue()


def write_mar(path: Path, model: str, version: str, weights: bytes | None = None, **metadata: object) -> Path:
    """A .mar of `model` `version`; with `weights`, also the weights file and a metadata.json describing them
    (arch mobilenet_v3_small, 224 px, their sha256), overridden by `metadata`."""
    manifest = {"model": {"modelName": model, "modelVersion": version, "serializedFile": "w.pth"}}
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        if weights is not None:
            mar.writestr("w.pth", weights)
            mar.writestr("metadata.json", json.dumps({
                "arch": "mobilenet_v3_small", "image_size": 224, "classes": list(CLASSES),
                "weights_sha256": hashlib.sha256(weights).hexdigest(), **metadata}))
    return path
