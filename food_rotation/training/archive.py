"""Weights + version -> a versioned TorchServe archive (.mar) in model_store/, via torch-model-archiver.

    scripts/archive.sh --weights weights/food_rotation_lite0.pth --version 1.0 [--name food_rotation]
                       [--archive-name food_rotation-v1.0] [--export-path model_store] [--config FILE] [--force]

(scripts/archive.sh runs this module; retraining calls `build_archive` as a function.) The archive holds the
TorchServe adapter (every module of handler/), the library it adapts (the food_rotation package: imaging, payload,
model, abstention; not its training/), the weights-only file, model-config.yaml and a metadata.json:
what this version is (arch, version, image size, turn averaging, accuracies, sha256 of the weights, created-at), its
calibration, and where a retrained one came from (datasets, starting version).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from food_rotation import MODEL_NAME
from food_rotation.provenance import Provenance

ROOT = Path(__file__).resolve().parents[2]
HANDLER_DIR = ROOT / "handler"
LIBRARY = ROOT / "food_rotation"  # carried: a version runs its own library, not the one installed beside it
NOT_CARRIED = ("training",)  # the subpackage the handler never imports
MODEL_STORE = ROOT / "model_store"
MODEL_CONFIG = HANDLER_DIR / "model-config.yaml"
_VERSION = re.compile(r"[0-9]+(\.[0-9]+){0,2}")
_MODEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_ARCHIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ArchiveBuildError(ValueError):
    """The inputs cannot make an archive; the message says which and what to do."""


def metadata(weights: Path, name: str, version: str, provenance: Provenance | None = None) -> dict[str, object]:
    """metadata.json of the archive, from the weights, the .json scripts/extract_model_weight.py wrote beside it and,
    for a retrained version, its provenance (given, or else read from that .json)."""
    sidecar = weights.with_suffix(".json")
    if not sidecar.is_file():
        raise ArchiveBuildError(f"{sidecar} is missing: make weights with scripts/extract_model_weight.py")
    info = json.loads(sidecar.read_text())
    provenance = provenance or Provenance.from_metadata(info)
    sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
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
        "weights_sha256": sha256,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        # A retrained version: the collected datasets it learnt from (with the photos held out of each), how many
        # demo scenes were mixed in, its accuracy on the held-out photos, and the version it was fine-tuned from.
        **(provenance.as_metadata() if provenance else {}),
        **_calibration(info),
        **_evaluation(info, sha256),
    }


def _evaluation(info: dict[str, object], sha256: str) -> dict[str, object]:
    """The figures `scripts/evaluate.py --record` ("evaluation") and fit_head.py ("evaluation_by_source") stored,
    each only while it describes these very weights: a version shows what it serves, never the figures of the
    weights that were there before."""
    carried: dict[str, object] = {}
    recorders = {"evaluation": "scripts/evaluate.py --record", "evaluation_by_source": "training/fit_head.py"}
    for key, recorder in recorders.items():
        evaluation = info.get(key)
        if not isinstance(evaluation, dict):
            continue
        if evaluation.get("weights_sha256") != sha256:
            print(f"note: the recorded {key} is of other weights (sha256 "
                  f"{str(evaluation.get('weights_sha256'))[:12]}, these are {sha256[:12]}): the archive carries "
                  f"none; run {recorder}", file=sys.stderr)
            continue
        carried[key] = evaluation
    return carried


def _calibration(info: dict[str, object]) -> dict[str, object]:
    """The fitted softmax temperature the handler reads, and how it was fitted; checked here, not at model load."""
    carried = {key: info[key] for key in ("temperature", "calibration") if info.get(key) is not None}
    temperature = carried.get("temperature", 1.0)
    number = isinstance(temperature, (int, float)) and not isinstance(temperature, bool)
    if not (number and math.isfinite(temperature) and temperature > 0):
        raise ArchiveBuildError(f"temperature in the weights' .json must be a positive number, got {temperature!r}")
    if "calibration" in carried and not isinstance(carried["calibration"], dict):
        raise ArchiveBuildError("calibration in the weights' .json must be an object")
    return carried


def _checked(weights: Path, version: str, name: str, archive_name: str, config: Path, archiver: Path) -> None:
    if not weights.is_file():
        raise ArchiveBuildError(f"weights file not found: {weights}")
    if not _VERSION.fullmatch(version):
        raise ArchiveBuildError(f"bad version {version!r}: use 1, 1.2 or 1.2.3")
    if not _MODEL_NAME.fullmatch(name):
        raise ArchiveBuildError(f"bad model name {name!r}: letters, digits, _ and -")
    if not _ARCHIVE_NAME.fullmatch(archive_name):
        raise ArchiveBuildError(f"bad archive name {archive_name!r}")
    if not config.is_file():
        raise ArchiveBuildError(f"model config not found: {config}")
    if not os.access(archiver, os.X_OK):
        raise ArchiveBuildError(f"torch-model-archiver not found at {archiver} (run make install)")


def staged_library(stage: Path) -> Path:
    """A folder to pass to --extra-files that puts the food_rotation package at the archive's top (the archiver
    copies a folder's contents, not the folder), without its training subpackage."""
    caches = shutil.ignore_patterns("__pycache__")

    def left_out(folder: str, names: list[str]) -> set[str]:
        top = {name for name in names if name in NOT_CARRIED} if Path(folder) == LIBRARY else set()
        return set(caches(folder, names)) | top

    shutil.copytree(LIBRARY, stage / "lib" / LIBRARY.name, ignore=left_out, dirs_exist_ok=True)
    return stage / "lib"


def build_archive(weights: Path, version: str, name: str = MODEL_NAME, archive_name: str | None = None,
                  export_path: Path = MODEL_STORE, config: Path = MODEL_CONFIG, force: bool = False,
                  archiver: Path | None = None, provenance: Provenance | None = None,
                  workers: int | None = None, min_confidence: float | None = None) -> Path:
    """Write `export_path/<archive_name>.mar` and return its path; ArchiveBuildError when an input is wrong.
    `workers` replaces the config's minWorkers and maxWorkers (the small-node profile: 1); `min_confidence` its
    handler's threshold (a retrained version's own, chosen leaving one source out)."""
    archiver = archiver or Path(os.environ.get("TORCH_MODEL_ARCHIVER", Path(sys.executable).parent /
                                               "torch-model-archiver"))
    archive_name = archive_name or name
    _checked(weights, version, name, archive_name, config, archiver)
    target = export_path / f"{archive_name}.mar"
    if target.exists() and not force:
        raise ArchiveBuildError(f"{target} exists; pass --force to replace it")
    document = metadata(weights, name, version, provenance)
    export_path.mkdir(parents=True, exist_ok=True)
    extra = [str(module) for module in sorted(HANDLER_DIR.glob("*.py"))  # the handler imports them by name
             if module.name != "rotation_handler.py"]
    # torch-model-archiver scratches in $TMPDIR/<model-name> and deletes it: every build gets its own TMPDIR.
    with tempfile.TemporaryDirectory(prefix="archive.") as stage:
        (Path(stage) / "tmp").mkdir()
        (Path(stage) / "metadata.json").write_text(json.dumps(document, indent=2) + "\n")
        if workers is not None or min_confidence is not None:
            config = _config_copy(config, Path(stage), workers, min_confidence)
        built = subprocess.run(
            [str(archiver), "--model-name", name, "--version", version, "--serialized-file", str(weights),
             "--handler", str(HANDLER_DIR / "rotation_handler.py"),
             "--extra-files", ",".join([*extra, str(Path(stage) / "metadata.json"), str(staged_library(Path(stage)))]),
             "--config-file", str(config), "--export-path", stage],
            env={**os.environ, "TMPDIR": str(Path(stage) / "tmp")}, capture_output=True, text=True, check=False)
        if built.returncode != 0:
            raise ArchiveBuildError(f"torch-model-archiver failed: {(built.stderr or built.stdout)[-2000:]}")
        shutil.move(Path(stage) / f"{name}.mar", target)
    return target


def worker_count(text: str) -> int:
    """A retrain's `--workers`, refused as it is parsed, before any training; `build_archive` refuses the same."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _config_copy(config: Path, stage: Path, workers: int | None, min_confidence: float | None) -> Path:
    """A copy of `config` (comments and all) asking TorchServe for `workers` workers and the handler for
    `min_confidence`, where given."""
    text = config.read_text()
    if workers is not None:
        if workers < 1:
            raise ArchiveBuildError(f"--workers must be at least 1, got {workers}")
        text, count = re.subn(r"(?m)^(minWorkers|maxWorkers):\s*\d+", rf"\g<1>: {workers}", text)
        if count != 2:
            raise ArchiveBuildError(f"{config} must set minWorkers and maxWorkers once each for --workers")
    if min_confidence is not None:
        if not 0 <= min_confidence <= 1:
            raise ArchiveBuildError(f"min_confidence must be from 0 to 1, got {min_confidence}")
        text, count = re.subn(r"(?m)^(\s+min_confidence:)\s*[0-9.]+", rf"\g<1> {min_confidence!r}", text)
        if count != 1:
            raise ArchiveBuildError(f"{config} must set the handler's min_confidence once to replace it")
    (stage / "config").mkdir()
    (stage / "config" / config.name).write_text(text)
    return stage / "config" / config.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="archive.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--version")
    parser.add_argument("--name", default=MODEL_NAME)
    parser.add_argument("--archive-name")
    parser.add_argument("--export-path", type=Path, default=MODEL_STORE)
    parser.add_argument("--config", type=Path, default=MODEL_CONFIG)
    parser.add_argument("--workers", type=int, help="workers the archive asks for (replaces the config's)")
    parser.add_argument("--force", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown:
            raise ArchiveBuildError(f"unknown argument: {unknown[0]}")
        if args.weights is None:
            raise ArchiveBuildError("--weights is required (a .pth from scripts/extract_model_weight.py)")
        if args.version is None:
            raise ArchiveBuildError("--version is required (e.g. 1.0)")
        target = build_archive(args.weights, args.version, args.name, args.archive_name, args.export_path,
                               args.config, args.force, workers=args.workers)
    except (ArchiveBuildError, OSError, KeyError, ValueError) as exc:
        print(f"archive.sh: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {target} ({args.name} {args.version}, {target.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
