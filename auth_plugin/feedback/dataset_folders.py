"""A dataset's folder, made whole or not at all: built in a scratch folder and renamed into place, so that a crash
leaves either no new dataset or a whole one; what an earlier crash left half made is set aside (renamed to
.broken-<name>-<time>, kept for a person to look at), never in the way of the next dataset (issue 33)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from auth_plugin.feedback.manifest import sync_folder, write_whole

log = logging.getLogger("auth_plugin.feedback.datasets")
INFO = "dataset.json"
_SCRATCH, _BROKEN = ".new-", ".broken-"


def is_dataset(folder: Path) -> bool:
    """A whole dataset: not a scratch or set-aside folder, and its dataset.json is there."""
    return not folder.name.startswith(".") and (folder / INFO).is_file()


def read_info(folder: Path) -> dict[str, Any]:
    return json.loads((folder / INFO).read_text())


def write_info(folder: Path, info: dict[str, Any]) -> None:
    write_whole(folder / INFO, (json.dumps(info, indent=2) + "\n").encode())


def make_whole(root: Path, name: str, info: dict[str, Any]) -> Path:
    """root/name with its photos/, thumbs/ and dataset.json, in one rename; a half-made root/name is set aside."""
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{name}-", dir=root))
    (scratch / "photos").mkdir()
    (scratch / "thumbs").mkdir()
    write_info(scratch, info)
    if (root / name).exists():
        set_aside(root / name)
    scratch.rename(root / name)
    sync_folder(root)
    return root / name


def set_aside(folder: Path) -> Path:
    target = folder.with_name(f"{_BROKEN}{folder.name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    folder.rename(target)
    log.warning("dataset folder %s had no dataset.json: set aside as %s", folder.name, target.name)
    return target


def half_made(root: Path) -> list[Path]:
    """Scratch folders of a dataset never made, and dataset folders without their dataset.json."""
    if not root.is_dir():
        return []
    return [folder for folder in sorted(root.iterdir())
            if folder.is_dir() and not folder.name.startswith(_BROKEN)
            and (folder.name.startswith(_SCRATCH) or not (folder / INFO).is_file())]
