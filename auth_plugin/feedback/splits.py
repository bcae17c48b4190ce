"""Which photos of a dataset are trained on and which are held out: chosen by each photo's sha256, so the same
photo is on the same side in every run, every dataset and every gateway."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

HELD_OUT_SHARE = 5  # one photo in five (by its sha256) is never trained on: the smoke gate checks it


def is_held_out(sha256: str) -> bool:
    """Stable across runs and machines: the same photo is always on the same side of the split."""
    return int(sha256[:8], 16) % HELD_OUT_SHARE == 0


@dataclass(frozen=True)
class Split:
    train: list[Path]
    held_out: list[Path]
    manifest_sha256: str  # identifies exactly what was trained on


def union(splits: list[Split]) -> Split:
    """Several datasets' splits as one. A photo collected in two of them (the same sha256) is on the same side in
    both, since the photo chooses its side, and counts once: the later dataset's copy, the latest correction."""

    def once(paths: list[Path]) -> list[Path]:
        return list({path.name: path for path in paths}.values())

    if len(splits) == 1:
        return splits[0]
    digest = hashlib.sha256("".join(split.manifest_sha256 for split in splits).encode()).hexdigest()
    return Split(once([p for s in splits for p in s.train]), once([p for s in splits for p in s.held_out]), digest)
