"""Collected corrections: datasets of upright photos, the training data of the next version.

A dataset is a plain folder, readable without the proxy (retraining reads it; an operator can copy it away):

    <root>/<name>/dataset.json          {"name", "number" (1, 2, ... in order of creation), "created_at", "closed_at"}
    <root>/<name>/manifest.jsonl        one line per event: a correction or a removal (who, when, what)
    <root>/<name>/photos/<sha256>.jpg   the photo turned upright, longest side <= `photo_side`, no EXIF
    <root>/<name>/thumbs/<sha256>.jpg   a small copy for the admin page

The manifest is the only truth: what a dataset holds and its counts are a fold over its lines. The sha256 is of
the bytes the caller sent, so the same photo sent again is counted, not stored twice. Feedback goes to the one
active dataset; starting a new one closes it. A retrained version names each dataset it learnt from with the digest
of its manifest at the time, so what it saw stays identified while the active dataset grows.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auth_plugin.database import AdvisoryLock
from auth_plugin.feedback.dataset_folders import half_made, is_dataset, make_whole, read_info, set_aside, write_info
from auth_plugin.feedback.manifest import append_event, manifest_size, read_events, sync_folder, write_whole
from auth_plugin.feedback.splits import Split, is_held_out
from food_rotation.photo_io import TURNS, load_upright, turn
from food_rotation.service_error import ServiceError

_WRITER_NAMESPACE = 0x66727377  # "frsw": the advisory lock of the datasets' one writer
SHARED_WAIT_S = 10.0  # how long a write waits for another gateway's before 503 datasets_busy
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DatasetError(ServiceError):
    """A refused dataset operation: `status` (400/404/409) and a code naming why."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Correction:
    """One collected photo: the turn it needed (`true_degree`) and what the service had answered."""

    sha256: str
    true_degree: int
    count: int
    user: str
    time: str
    model_version: str | None = None
    model_degree: int | None = None


@dataclass(frozen=True)
class Quota:
    """How much one dataset takes: photos in all, and photos from one user (any predict token may write labels)."""

    per_dataset: int = 20_000
    per_user: int = 1_000


DEFAULT_QUOTA = Quota()

class DatasetStore:
    """Datasets on disk (an append-only manifest each), with every dataset's current photos indexed in memory, so
    an add costs the same with 5 photos or 50,000. Several gateways may share the folder (pods on one claim): with
    `shared` (an advisory lock on their PostgreSQL) one of them writes at a time, and an index is folded again
    when its manifest has grown under another writer, so duplicates, quotas and "which dataset is active" hold
    across pods."""

    def __init__(self, root: Path, max_pixels: int, photo_side: int = 1024, thumb_side: int = 192,
                 quota: Quota = DEFAULT_QUOTA, max_full_pixels: int | None = None,
                 shared: AdvisoryLock | None = None) -> None:
        self.root = root
        self._max_pixels = max_pixels
        self._max_full_pixels = max_full_pixels
        self._photo_side = photo_side
        self._thumb_side = thumb_side
        self._quota = quota
        self._lock = threading.RLock()  # one writer at a time; the proxy calls in from worker threads
        self._shared = shared
        # dataset -> (the manifest's size when folded, sha256 -> its correction, oldest first)
        self._index: dict[str, tuple[int, dict[str, Correction]]] = {}

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The one writer: of this process, and with `shared`, of every gateway on the folder."""
        with self._lock:
            if self._shared is None:
                yield
                return
            with self._shared.held(AdvisoryLock.key(_WRITER_NAMESPACE, str(self.root)), SHARED_WAIT_S) as taken:
                if not taken:
                    raise DatasetError(503, "datasets_busy", "another gateway has been writing the datasets for "
                                                             f"{SHARED_WAIT_S:g} s; try again")
                yield

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()

    # -- reading ----------------------------------------------------------------------------------------------

    def _folder(self, name: str) -> Path:
        if not _NAME.fullmatch(name):
            raise DatasetError(400, "bad_dataset_name", "a dataset name is 1-64 of a-z, 0-9, '_' and '-'")
        folder = self.root / name
        if not is_dataset(folder):
            raise DatasetError(404, "unknown_dataset", f"there is no dataset {name!r}")
        return folder

    def _events(self, folder: Path) -> Iterator[dict[str, Any]]:
        return read_events(folder / "manifest.jsonl")

    def corrections(self, name: str) -> list[Correction]:
        """The photos a dataset holds now, oldest first."""
        return list(self._held(name).values())

    def _held(self, name: str) -> dict[str, Correction]:
        """The dataset's index: the fold over its manifest, read again only when the manifest has grown since
        (another gateway wrote to it; this one keeps its index up to date as it writes)."""
        with self._lock:
            folder = self._folder(name)
            size = manifest_size(folder / "manifest.jsonl")
            if name not in self._index or self._index[name][0] != size:
                self._index[name] = (size, self._fold(folder))
            return self._index[name][1]

    def _appended(self, name: str, event: dict[str, Any]) -> None:
        """`event` on disk, and the index's size mark moved past it (the caller updates the index to match)."""
        manifest = self.root / name / "manifest.jsonl"
        append_event(manifest, event)
        self._index[name] = (manifest_size(manifest), self._index[name][1])

    def _fold(self, folder: Path) -> dict[str, Correction]:
        held: dict[str, Correction] = {}
        for event in self._events(folder):
            sha = event["sha256"]
            if event["event"] == "removed":
                held.pop(sha, None)
                continue
            count = held[sha].count + 1 if sha in held else 1
            held[sha] = Correction(sha, event["true_degree"], count, event["user"], event["time"],
                                   event.get("model_version"), event.get("model_degree"))
        return held

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        folders = [p for p in self.root.iterdir() if is_dataset(p)]
        return [p.name for p in sorted(folders, key=lambda p: read_info(p)["number"])]

    def active(self) -> str | None:
        return next((name for name in reversed(self.names()) if read_info(self.root / name)["closed_at"] is None),
                    None)

    def summary(self, name: str, corrections: list[Correction] | None = None) -> dict[str, Any]:
        info = read_info(self._folder(name))
        corrections = self.corrections(name) if corrections is None else corrections
        per_class = {str(degree): 0 for degree in TURNS}
        for correction in corrections:
            per_class[str(correction.true_degree)] += 1
        return {**info, "photos": len(corrections), "submissions": sum(c.count for c in corrections),
                "held_out": sum(is_held_out(c.sha256) for c in corrections), "per_class": per_class}

    def describe(self, name: str) -> dict[str, Any]:
        corrections = self.corrections(name)
        return {**self.summary(name, corrections), "items": [asdict(c) for c in corrections]}

    def photo(self, name: str, sha256: str, thumbnail: bool) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise DatasetError(400, "bad_sha256", "a photo is named by the 64 hex digits of its sha256")
        path = self._folder(name) / ("thumbs" if thumbnail else "photos") / f"{sha256}.jpg"
        if not path.is_file():
            raise DatasetError(404, "unknown_photo", f"dataset {name!r} holds no photo {sha256[:12]}...")
        return path

    def split(self, name: str) -> Split:
        """Training photos and held-out photos; the manifest digest names the exact state trained on."""
        folder = self._folder(name)
        corrections = self.corrections(name)
        train = [folder / "photos" / f"{c.sha256}.jpg" for c in corrections if not is_held_out(c.sha256)]
        held_out = [folder / "photos" / f"{c.sha256}.jpg" for c in corrections if is_held_out(c.sha256)]
        digest = hashlib.sha256(json.dumps([asdict(c) for c in corrections], sort_keys=True).encode()).hexdigest()
        return Split(train, held_out, digest)

    def select(self, selection: str) -> list[str]:
        """Dataset names from what an operator types: 'all' (in order of creation) or 'name,name,...'."""
        if selection.strip() == "all":
            return self.names()
        names = list(dict.fromkeys(name.strip() for name in selection.split(",") if name.strip()))
        for name in names:
            self._folder(name)  # 404 names the unknown one
        return names

    # -- writing ----------------------------------------------------------------------------------------------

    def start_new(self, name: str | None = None) -> str:
        """Open a new, empty dataset, then close the active one (if any). The new one is built in a scratch
        folder and renamed into place, so a crash leaves either no new dataset or a whole one; a folder of that
        name left without its dataset.json by an earlier crash is set aside first, never a 500
        (dataset_folders.make_whole)."""
        with self._writing():
            existing = self.names()
            if name is None:
                numbers = [int(n.rsplit("-", 1)[1]) for n in existing if re.fullmatch(r"feedback-\d+", n)]
                name = f"feedback-{max(numbers, default=0) + 1}"
            if not _NAME.fullmatch(name):
                raise DatasetError(400, "bad_dataset_name", "a dataset name is 1-64 of a-z, 0-9, '_' and '-'")
            if name in existing:
                raise DatasetError(409, "dataset_exists", f"there is already a dataset {name!r}")
            active = self.active()
            make_whole(self.root, name, {"name": name, "number": len(existing) + 1, "created_at": now(),
                                         "closed_at": None})
            if active is not None:  # last: until here the old one still takes corrections
                folder = self.root / active
                write_info(folder, {**read_info(folder), "closed_at": now()})
            return name

    def repair(self) -> list[str]:
        """At start: what a crash left half made is set aside (dataset_folders.half_made); their names."""
        with self._writing():
            broken = half_made(self.root)
            for folder in broken:
                set_aside(folder)
            if broken:
                sync_folder(self.root)
            return [folder.name for folder in broken]

    def add(self, image: bytes, true_degree: int, user: str, model_version: str | None = None,
            model_degree: int | None = None) -> tuple[str, Correction, bool]:
        """Store `image` turned upright in the active dataset: (dataset, correction, was it a duplicate).

        PhotoError when the bytes are not a usable image, exactly as a prediction would be refused.
        """
        sha = hashlib.sha256(image).hexdigest()
        with self._writing():
            name = self.active() or self.start_new()
            folder = self.root / name
            held = self._held(name)
            previous = held.get(sha)
            if previous is None:
                self._check_quota(name, held, user)
            if previous is None or previous.true_degree != true_degree:
                self._store_upright(folder, sha, image, true_degree)
            event = {"event": "correction", "sha256": sha, "true_degree": true_degree, "user": user, "time": now(),
                     "model_version": model_version, "model_degree": model_degree}
            self._appended(name, event)  # on disk before the index says so
            count = previous.count + 1 if previous else 1
            correction = Correction(sha, true_degree, count, user, event["time"], model_version, model_degree)
            held[sha] = correction
        return name, correction, previous is not None

    def _check_quota(self, name: str, held: dict[str, Correction], user: str) -> None:
        if len(held) >= self._quota.per_dataset:
            raise DatasetError(409, "dataset_full", f"dataset {name!r} holds {len(held)} photos, its limit: an admin "
                                                    "starts a new one (POST /datasets)")
        if sum(correction.user == user for correction in held.values()) >= self._quota.per_user:
            raise DatasetError(429, "user_quota_exceeded", f"{user!r} has sent {self._quota.per_user} photos to "
                                                           f"dataset {name!r}, the most one user may")

    def remove(self, name: str, sha256: str, user: str) -> None:
        with self._writing():
            self.photo(name, sha256, thumbnail=False)
            folder = self._folder(name)
            held = self._held(name)  # up to date before the size mark moves past this event
            self._appended(name, {"event": "removed", "sha256": sha256, "user": user, "time": now()})
            held.pop(sha256, None)
            for kind in ("photos", "thumbs"):
                (folder / kind / f"{sha256}.jpg").unlink(missing_ok=True)

    def remove_user(self, name: str, contributor: str, user: str) -> list[str]:
        """Drop every photo whose latest correction came from `contributor` (a token gone bad); their sha256."""
        with self._writing():
            dropped = [c.sha256 for c in self._held(name).values() if c.user == contributor]
            for sha256 in dropped:
                self.remove(name, sha256, user)
            return dropped

    def _store_upright(self, folder: Path, sha: str, image: bytes, true_degree: int) -> None:
        upright, _ = load_upright(image, self._photo_side, self._max_pixels, self._max_full_pixels)  # EXIF turn too
        upright = turn(upright, true_degree)
        for kind, side, quality in (("photos", self._photo_side, 92), ("thumbs", self._thumb_side, 80)):
            copy = upright.copy()
            copy.thumbnail((side, side))
            out = io.BytesIO()
            copy.save(out, "JPEG", quality=quality)  # no EXIF: location and camera data stay out of the dataset
            write_whole(folder / kind / f"{sha}.jpg", out.getvalue())
