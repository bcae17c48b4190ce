"""The smoke gate: a validation set run through one exact version before it may take any traffic.

Any folder of upright photos will do: each is sent at its four turns, so the labels come free, as in training.
A version trained on collected corrections is also checked on the corrections held out of its training.
A version that errors on any image or scores below the threshold on either set is refused.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import aiohttp
from PIL import Image

from auth_plugin.forwarding import UpstreamError, forward
from auth_plugin.torchserve_keys import TorchServeKeys
from food_rotation.photo_io import TURNS
from food_rotation.provenance import Provenance

_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


class HeldOutSource(Protocol):
    """Where the gate's held-out corrections come from (the feedback store's HeldOutCorrections): asked, never read."""

    async def named(self, named: str) -> list[Path]:
        """The held-out photos of the datasets `named` lists ('all' or comma-separated)."""

    async def of(self, provenance: Provenance, archive: str) -> list[Path]:
        """The photos an archive's provenance names as held out of its training."""


class GateRefused(Exception):
    """The version errored or scored too low; the message says which and how."""


def gate_photos(folder: Path, max_photos: int) -> list[Path]:
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _SUFFIXES)[:max_photos]
    if not photos:
        raise GateRefused(f"no validation photos in {folder}")
    return photos


def validation_images(photos: Sequence[Path]) -> list[tuple[bytes, int]]:
    """(JPEG bytes, expected model_degree) for each photo at each turn."""
    images = []
    for photo in photos:
        with Image.open(photo) as img:
            upright = img.convert("RGB")
        for degree in TURNS:
            out = io.BytesIO()
            upright.rotate(-degree, expand=True).save(out, "JPEG", quality=90)
            images.append((out.getvalue(), degree))
    return images


class SmokeGate:
    def __init__(self, session: aiohttp.ClientSession, keys: TorchServeKeys, inference_url: str, folder: Path,
                 min_accuracy: float, max_photos: int = 8) -> None:
        self._session = session
        self._keys = keys
        self._url = inference_url.rstrip("/")
        self._folder = folder
        self._min_accuracy = min_accuracy
        self._max_photos = max_photos

    async def check(self, model: str, version: str, held_out: Sequence[Path] = ()) -> dict[str, float]:
        """Accuracy on the gate's samples and, for a version trained on collected corrections, on the photos
        held out of its training: {"gate_accuracy": ..., "heldout_accuracy": ...}. Each must reach the
        threshold (a retrained version must still know the old photos); GateRefused if one falls short or errs."""
        sets = {"gate_accuracy": ("the gate's samples", await asyncio.to_thread(gate_photos, self._folder,
                                                                               self._max_photos))}
        if held_out:
            sets["heldout_accuracy"] = ("the held-out corrections", list(held_out))
        return {key: await self._accuracy(model, version, label, photos) for key, (label, photos) in sets.items()}

    async def _accuracy(self, model: str, version: str, label: str, photos: list[Path]) -> float:
        images = await asyncio.to_thread(validation_images, photos)
        url = f"{self._url}/predictions/{model}/{version}"
        limit = asyncio.Semaphore(4)

        async def one(data: bytes) -> tuple[int, bytes]:
            async with limit:
                try:
                    answer = await forward(self._session, self._keys, url, data, {"Content-Type": "image/jpeg"})
                except UpstreamError as exc:
                    raise GateRefused(f"TorchServe could not answer: {exc.message}") from exc
                return answer.status, answer.body

        answers = await asyncio.gather(*(one(data) for data, _ in images))
        correct = 0
        for (status, body), (_, expected) in zip(answers, images, strict=True):
            if status != 200:
                raise GateRefused(f"a validation image got HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
            correct += _degree(body) == expected
        accuracy = correct / len(images)
        if accuracy < self._min_accuracy:
            raise GateRefused(f"accuracy {accuracy:.3f} on {len(images)} images of {label} is below "
                              f"the threshold {self._min_accuracy:.3f}")
        return accuracy


def _degree(body: bytes) -> int | None:
    try:
        return int(json.loads(body)["model_degree"])
    except (ValueError, KeyError, TypeError):
        return None
