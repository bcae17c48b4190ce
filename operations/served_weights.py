"""Which archive is served, and its weights back out of the .mar: where a retrain starts, so that it improves the
model users get instead of replacing it with a fine-tuned copy of something else.

The proxy's admin API knows the default version and its archive file name; the archive (a zip) holds the
weights-only file (the manifest's `serializedFile`) and metadata.json (arch, image size, classes, temperature).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

import torch

from auth_plugin.control.archive_catalogue import ArchiveError, read_archive
from auth_plugin.control.models_cli import Refused, admin_call
from food_rotation.rotation_model import CLASSES, RotationNet


class ServedWeightsError(Exception):
    """An archive that cannot be fine-tuned from: not a model archive, or weights that do not match it."""


def version_key(version: str) -> tuple[int, ...]:
    """Versions compare as numbers (2.10 after 2.9); one that is not numbers sorts first."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return ()


def archives_of(model_store: Path, model: str) -> dict[str, str]:
    """version -> archive file name for the archives of `model` directly in the model store, oldest first."""
    found = {}
    for path in sorted(model_store.glob("*.mar")):
        try:
            info = read_archive(model_store, path.name)
        except ArchiveError:
            continue
        if info.model == model:
            found[str(info.version)] = path.name
    return dict(sorted(found.items(), key=lambda item: version_key(item[0])))


def newest_archive(model_store: Path, model: str) -> tuple[str, str] | None:
    """(version, archive) of the highest version of `model` in the model store; None when it holds none."""
    archives = archives_of(model_store, model)
    return list(archives.items())[-1] if archives else None


def served_archive(url: str, model: str, token: str) -> tuple[str, str]:
    """(version, archive file name) of the default version, from the proxy's admin API; Refused when it cannot say."""
    rows = admin_call(url, model, token, "GET", "").get("versions", [])
    default = next((row for row in rows if row.get("default")), None)
    if default is None:
        raise Refused(f"error: the proxy at {url} serves no default version of {model}", 404)
    return str(default["version"]), str(default["archive"])


def served_weights(archive: Path, into: Path) -> Path:
    """The archive's weights as `into`/<archive>.pth with a .json sidecar (arch, image_size, classes, the
    temperature if it has one, version, sha256), checked against metadata.json's digest and loaded strictly
    (weights_only=True) into its architecture before a retrain spends minutes on them."""
    try:
        with zipfile.ZipFile(archive) as mar:
            manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]
            metadata = json.loads(mar.read("metadata.json"))
            weights = mar.read(manifest["serializedFile"])
        arch, image_size, classes = metadata["arch"], int(metadata["image_size"]), list(metadata["classes"])
    except (OSError, zipfile.BadZipFile, KeyError, TypeError, ValueError) as exc:
        raise ServedWeightsError(f"{archive} is not a model archive of this project: {exc!r}") from exc
    digest = hashlib.sha256(weights).hexdigest()
    if metadata.get("weights_sha256") not in (None, digest):
        raise ServedWeightsError(f"{archive}: its weights' sha256 {digest[:12]} is not the one its metadata.json "
                                 f"records ({str(metadata['weights_sha256'])[:12]})")
    if classes != list(CLASSES):
        raise ServedWeightsError(f"{archive} answers {classes}, not the served classes {list(CLASSES)}")
    into.mkdir(parents=True, exist_ok=True)
    target = into / f"{archive.stem}.pth"
    target.write_bytes(weights)
    try:
        RotationNet(arch).load_state_dict(torch.load(target, map_location="cpu", weights_only=True))
    except (pickle.UnpicklingError, RuntimeError, ValueError) as exc:
        target.unlink()
        raise ServedWeightsError(f"{archive}: its weights do not load into a {arch}: "
                                 f"{str(exc).strip().splitlines()[0]}") from exc
    sidecar = {"arch": arch, "image_size": image_size, "classes": classes, "version": str(manifest["modelVersion"]),
               "archive": archive.name, "sha256": digest}
    if metadata.get("temperature") is not None:
        sidecar["temperature"] = metadata["temperature"]
    if metadata.get("turn_averaging"):
        sidecar["turn_averaging"] = True
    target.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    return target
