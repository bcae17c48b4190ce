"""The feedback store's answer to the deploy gate: which collected photos a new version is scored on.

The control plane asks through `auth_plugin.control.admin_api.HeldOutSource` and never reads the store itself,
so neither subpackage imports the other; create_app hands this one over.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from auth_plugin.feedback.datasets import DatasetError, DatasetStore
from auth_plugin.feedback.splits import union
from food_rotation.provenance import Provenance
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin.feedback")


class HeldOutCorrections:
    """Held-out corrections, read off the event loop (the store reads manifests and stats files)."""

    def __init__(self, store: DatasetStore) -> None:
        self._store = store

    async def named(self, named: str) -> list[Path]:
        """The current held-out photos of the datasets `named` lists (comma-separated, or 'all'): none is a 422."""
        splits = [await asyncio.to_thread(self._store.split, name)
                  for name in await asyncio.to_thread(self._store.select, named)]
        held_out = union(splits).held_out if splits else []
        if not held_out:
            raise ServiceError(422, "no_held_out_photos", f"dataset {named!r} has no held-out photos to gate on")
        return held_out

    async def of(self, provenance: Provenance, archive: str) -> list[Path]:
        """The collected photos an archive's provenance names as held out of its training; one no longer
        collected here is skipped with a warning."""
        return await asyncio.to_thread(self._collected, provenance, archive)

    def _collected(self, provenance: Provenance, archive: str) -> list[Path]:
        found, missing = [], 0
        for use in provenance.datasets:
            for sha256 in use.held_out:
                try:
                    found.append(self._store.photo(use.name, sha256, thumbnail=False))
                except DatasetError as exc:
                    if exc.status != 404:
                        raise
                    missing += 1
        if missing:
            log.warning("%s names %d held-out photos that are not collected here: not gating on them",
                        archive, missing)
        return found
