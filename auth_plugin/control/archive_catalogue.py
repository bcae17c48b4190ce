"""The model store as the control plane sees it: which archives exist, what each holds (model, version,
metadata.json), and which collected datasets a retrained one learnt from. Reading a zip is blocking file work:
the async methods do it off the event loop."""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from food_rotation.service_error import ServiceError

_ARCHIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.mar")


class ArchiveError(ServiceError):
    """A bad archive name (400), a missing archive (404) or a file that is not a model archive (400)."""


@dataclass(frozen=True)
class ArchiveInfo:
    model: str
    version: str
    metadata: dict[str, Any]
    handler_config: dict[str, Any] = field(default_factory=dict)  # the handler: section of its model-config.yaml

    @property
    def datasets(self) -> list[str]:
        """The collected datasets a version was retrained on: `datasets` (a list), or `dataset` (one: archives
        retrained before several datasets could be combined)."""
        entries = self.metadata.get("datasets")
        if not isinstance(entries, list):
            entries = [self.metadata["dataset"]] if isinstance(self.metadata.get("dataset"), dict) else []
        return [str(entry["name"]) for entry in entries if isinstance(entry, dict) and entry.get("name")]

    def trained_on(self) -> dict[str, Any]:
        """The datasets it was retrained on, and its accuracy on their held-out photos."""
        return {"datasets": self.datasets, "heldout_acc": self.metadata.get("heldout_acc")}


def read_archive(model_store: Path, archive: str) -> ArchiveInfo:
    """What an archive directly in the model store holds; ArchiveError for anything else (paths, URLs, junk)."""
    if "/" in archive or "\\" in archive or ".." in archive or "://" in archive or not _ARCHIVE_NAME.fullmatch(archive):
        raise ArchiveError(400, "bad_archive_name",
                           "give the file name of a .mar directly inside model_store/ (no paths, no URLs)")
    path = model_store / archive
    if path.is_symlink():  # a link could point anywhere: only archives that were copied into the store are served
        raise ArchiveError(400, "archive_is_a_link", f"{archive} is a symbolic link: copy the archive into the "
                                                     "model store instead")
    if not path.is_file():
        raise ArchiveError(404, "archive_not_found", f"{archive} is not in the model store")
    try:
        with zipfile.ZipFile(path) as mar:
            manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]
            metadata = json.loads(mar.read("metadata.json")) if "metadata.json" in mar.namelist() else {}
            config = yaml.safe_load(mar.read(manifest["configFile"])) if manifest.get("configFile") else {}
    except (zipfile.BadZipFile, KeyError, ValueError, yaml.YAMLError) as exc:
        raise ArchiveError(400, "bad_archive", f"{archive} is not a model archive: {exc}") from exc
    handler = config.get("handler") if isinstance(config, dict) else None
    return ArchiveInfo(manifest["modelName"], manifest["modelVersion"], metadata,
                       handler if isinstance(handler, dict) else {})


class ArchiveCatalogue:
    def __init__(self, model_store: Path) -> None:
        self.model_store = model_store

    def exists(self, archive: str) -> bool:
        return (self.model_store / archive).is_file()

    async def read(self, archive: str) -> ArchiveInfo:
        return await asyncio.to_thread(read_archive, self.model_store, archive)

    async def metadata(self, archives: list[str]) -> dict[str, dict[str, Any]]:
        """metadata.json of each archive ({} for one that is gone or unreadable), in one trip off the loop."""
        def read_all() -> dict[str, dict[str, Any]]:
            found = {}
            for archive in archives:
                try:
                    found[archive] = read_archive(self.model_store, archive).metadata
                except ArchiveError:
                    found[archive] = {}
            return found
        return await asyncio.to_thread(read_all)

    async def of_model(self, model: str) -> dict[str, ArchiveInfo]:
        """Every readable archive of `model` in the store, by file name."""
        def scan() -> dict[str, ArchiveInfo]:
            found = {}
            for path in sorted(self.model_store.glob("*.mar")):
                try:
                    info = read_archive(self.model_store, path.name)
                except ArchiveError:
                    continue
                if info.model == model:
                    found[path.name] = info
            return found
        return await asyncio.to_thread(scan)
