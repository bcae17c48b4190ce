"""A dataset's files on disk, written so that a crash or a full disk loses nothing acknowledged: the manifest is
appended one whole, fsynced line at a time and read back skipping (and reporting) a damaged line; photos and
dataset.json are replaced whole, never half-written."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("auth_plugin.feedback.datasets")


def read_events(manifest: Path) -> Iterator[dict[str, Any]]:
    """The manifest's events; a damaged line (cut short by a crash or a full disk) is skipped and reported, never
    fatal: the rest of the dataset stays readable."""
    if not manifest.is_file():
        return
    with manifest.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            try:
                event = json.loads(line) if line.endswith("\n") else None
            except ValueError:
                event = None
            if isinstance(event, dict) and {"event", "sha256"} <= event.keys():
                yield event
            elif line.strip():
                log.warning("%s line %d is damaged and skipped: %r", manifest, number, line[:60])


def append_event(manifest: Path, event: dict[str, Any]) -> None:
    """One whole line, on disk before the caller answers 201. A line an earlier crash cut short is closed first, so
    the new event never glues onto it (the reader then skips the fragment alone)."""
    with manifest.open("a+b") as out:
        if out.tell() > 0:
            out.seek(-1, os.SEEK_END)
            if out.read(1) != b"\n":
                out.write(b"\n")
        out.write(json.dumps(event).encode() + b"\n")
        out.flush()
        os.fsync(out.fileno())


def write_whole(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of it (a crash leaves only a .partial behind); the
    file, then its folder, are on disk before this returns, so a manifest line written after it never points at
    a photo a power cut lost."""
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """fsync a folder: the names made, renamed or removed in it are on disk."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def manifest_size(manifest: Path) -> int:
    """Bytes in the manifest (0 before its first event): it only grows, so a new size means new events."""
    try:
        return manifest.stat().st_size
    except FileNotFoundError:
        return 0
