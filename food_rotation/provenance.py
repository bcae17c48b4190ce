"""Where a retrained version came from, as one value: written into its archive's metadata.json by
food_rotation/training/archive.py, read back by the deploy gate (auth_plugin/control/admin_api.py, the photos found by
auth_plugin/feedback/gate_photos.py), which checks the version on exactly the corrections held out of its training,
named by sha256, instead of splitting the live datasets again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DatasetUse:
    """One collected dataset as a version saw it: its manifest digest then, and which photos were held out."""

    name: str
    manifest_sha256: str
    train_photos: int
    held_out: tuple[str, ...]  # sha256 of each held-out photo (DatasetStore names photos by it)

    @classmethod
    def of(cls, name: str, manifest_sha256: str, train: Sequence[Path], held_out: Sequence[Path]) -> DatasetUse:
        return cls(name, manifest_sha256, len(train), tuple(sorted(path.stem for path in held_out)))


@dataclass(frozen=True)
class Provenance:
    datasets: tuple[DatasetUse, ...]
    demo_scenes: int
    init_version: str | None
    init_sha256: str
    heldout_acc: float
    heldout_acc_before: float | None

    def as_metadata(self) -> dict[str, Any]:
        document = asdict(self)
        document["datasets"] = [{**asdict(use), "held_out": list(use.held_out), "held_out_photos": len(use.held_out)}
                                for use in self.datasets]
        return document

    @classmethod
    def from_metadata(cls, document: Mapping[str, Any]) -> Provenance | None:
        """The provenance a weights' .json or an archive's metadata.json carries; None for a version that was
        not retrained from collected datasets."""
        entries = document.get("datasets")
        if not isinstance(entries, list) or "init_sha256" not in document:
            return None
        uses = tuple(DatasetUse(str(entry["name"]), str(entry.get("manifest_sha256", "")),
                                int(entry.get("train_photos", 0)), tuple(entry.get("held_out", ())))
                     for entry in entries if isinstance(entry, dict) and entry.get("name"))
        return cls(uses, int(document.get("demo_scenes", 0)), document.get("init_version"),
                   str(document["init_sha256"]), float(document.get("heldout_acc", float("nan"))),
                   document.get("heldout_acc_before"))
