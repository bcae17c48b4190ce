"""The smoke gate: a validation set run through one exact version before it may take any traffic.

Any folder of upright photos will do: each is sent at its four turns, so the labels come free, as in training.
A version that errors on any image or scores below the threshold is refused.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import aiohttp
from PIL import Image

from auth_plugin.forwarding import UpstreamError, forward
from auth_plugin.torchserve_keys import TorchServeKeys

TURNS = (0, 90, 180, 270)
_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


class GateRefused(Exception):
    """The version errored or scored too low; the message says which and how."""


def validation_images(folder: Path, max_photos: int) -> list[tuple[bytes, int]]:
    """(JPEG bytes, expected model_degree) for each photo at each turn."""
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _SUFFIXES)[:max_photos]
    if not photos:
        raise GateRefused(f"no validation photos in {folder}")
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

    async def check(self, model: str, version: str) -> float:
        """The version's accuracy on the validation set; GateRefused if it errs or falls short."""
        images = await asyncio.to_thread(validation_images, self._folder, self._max_photos)
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
            raise GateRefused(f"accuracy {accuracy:.3f} on {len(images)} validation images is below "
                              f"the threshold {self._min_accuracy:.3f}")
        return accuracy


def _degree(body: bytes) -> int | None:
    try:
        return int(json.loads(body)["model_degree"])
    except (ValueError, KeyError, TypeError):
        return None
