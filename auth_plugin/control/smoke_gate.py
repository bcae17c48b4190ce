"""The smoke gate: validation sets run through one exact version before it may take any traffic.

First, what the version recorded of itself (check_recorded): a version that turns more than max_unseen_harm of the
upright photos of a source it never saw (leave one source out: make weights, make retrain), or that serves a lower
threshold than the one that kept it there, is refused before it is even registered.
Then any folder of upright photos will do: each is sent at its four turns, so the labels come free, as in training.
The sets: the generated samples, real photos never trained on, and for a retrained version the corrections held
out of its training. A version that errors on any image, scores below the threshold, or does worse than the
current default on any set (accuracy, or upright photos turned) is refused, with every set's scores and the next
step in the refusal.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
from PIL import Image

from auth_plugin.control.archive_catalogue import ArchiveInfo
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


def upright_photos(folder: Path, max_photos: int) -> list[Path]:
    """`max_photos` photos below `folder`, spread evenly over its sorted list (the held-out real photos are sorted
    by source: the first twelve would all be fish); none for a folder that is not there."""
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _SUFFIXES)
    if len(photos) <= max_photos:
        return photos
    return [photos[i * len(photos) // max_photos] for i in range(max_photos)]


def gate_photos(folder: Path, max_photos: int) -> list[Path]:
    photos = upright_photos(folder, max_photos)
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


@dataclass(frozen=True)
class Score:
    accuracy: float  # right turn, over every image at its four turns
    harm: float  # upright images the version would turn (trusted and not 0), over the upright images


@dataclass(frozen=True)
class GateSet:
    key: str  # the result keys: <key>_accuracy, <key>_harm, <key>_default_accuracy, ...
    label: str
    photos: tuple[Path, ...]
    absolute: bool  # whether min_accuracy applies as well (the samples and the held-out corrections)


NEXT_STEP = ("Next step: see which photos it gets wrong (scripts/evaluate.py on the set), retrain with more photos "
             "of that kind (make retrain), and deploy the new archive; PROXY_GATE_TOLERANCE and "
             "PROXY_GATE_MIN_ACCURACY set how strict the gate is, PROXY_GATE_DIR and PROXY_GATE_REAL_DIR its photos.")


class SmokeGate:
    """Every new version is scored through its own TorchServe version on the gate's sets: the generated samples
    (PROXY_GATE_DIR), real upright photos never trained on (PROXY_GATE_REAL_DIR: the held-out split of the
    training sources, which `make serve` and `make test` fetch and link there; `make serve` says when it is missing)
    and, for a retrained version, the corrections held out of its training. It must reach min_accuracy on the
    samples and the corrections, and be no worse than the current default on every set, on accuracy and on harm,
    within `tolerance`."""

    def __init__(self, session: aiohttp.ClientSession, keys: TorchServeKeys, inference_url: str, folder: Path,
                 min_accuracy: float, real_folder: Path | None = None, tolerance: float = 0.05,
                 max_photos: int = 8, max_real_photos: int = 12, max_unseen_harm: float = 0.01) -> None:
        self._session = session
        self._keys = keys
        self._url = inference_url.rstrip("/")
        self._folder = folder
        self._real_folder = real_folder
        self._min_accuracy = min_accuracy
        self._tolerance = tolerance
        self._max_photos = max_photos
        self._max_real_photos = max_real_photos
        self._max_unseen_harm = max_unseen_harm
        self._baselines: dict[tuple[str, str, tuple[Path, ...]], Score] = {}

    def check_recorded(self, info: ArchiveInfo) -> dict[str, float]:
        """The version's recorded harm on sources it never saw ({"unseen_worst_harm": ...}; {} when it recorded
        none, e.g. the demo weights); GateRefused when it is above max_unseen_harm or would not hold as served."""
        problem = unseen_sources_problem(info, self._max_unseen_harm)
        if problem:
            raise GateRefused(problem + ". " + NEXT_STEP)
        recorded = info.metadata.get("evaluation_by_source")
        return {"unseen_worst_harm": float(recorded["worst_harm"])} if isinstance(recorded, dict) else {}

    async def _sets(self, held_out: Sequence[Path]) -> list[GateSet]:
        sets = [GateSet("gate", "the gate's samples", tuple(await asyncio.to_thread(
            gate_photos, self._folder, self._max_photos)), absolute=True)]
        if self._real_folder is not None:
            real = await asyncio.to_thread(upright_photos, self._real_folder, self._max_real_photos)
            if real:
                sets.append(GateSet("real", "real photos never trained on", tuple(real), absolute=False))
        if held_out:
            sets.append(GateSet("heldout", "the held-out corrections", tuple(held_out), absolute=True))
        return sets

    async def check(self, model: str, version: str, held_out: Sequence[Path] = (),
                    baseline: str | None = None) -> dict[str, float]:
        """Scores on every set ({"gate_accuracy": ..., "gate_harm": ..., "real_accuracy": ..., and the
        `baseline` version's as "..._default_accuracy"}); GateRefused naming every set that falls short, with both
        scores and the next step. `baseline` None (a rollback) skips the comparison."""
        results: dict[str, float] = {}
        problems = []
        for gate_set in await self._sets(held_out):
            score = await self._score(model, version, gate_set.photos)
            results |= {f"{gate_set.key}_accuracy": score.accuracy, f"{gate_set.key}_harm": score.harm}
            if gate_set.absolute and score.accuracy < self._min_accuracy:
                problems.append(f"{gate_set.label}: accuracy {score.accuracy:.3f} on {4 * len(gate_set.photos)} "
                                f"images is below the threshold {self._min_accuracy:.3f}")
            if baseline is None:
                continue
            base = await self._baseline(model, baseline, gate_set)
            results |= {f"{gate_set.key}_default_accuracy": base.accuracy, f"{gate_set.key}_default_harm": base.harm}
            if score.accuracy < base.accuracy - self._tolerance:
                problems.append(f"{gate_set.label}: accuracy {score.accuracy:.3f} against the default {baseline}'s "
                                f"{base.accuracy:.3f} (tolerance {self._tolerance:.2f})")
            if score.harm > base.harm + self._tolerance:
                problems.append(f"{gate_set.label}: turns {score.harm:.1%} of upright photos against the default "
                                f"{baseline}'s {base.harm:.1%} (tolerance {self._tolerance:.0%})")
        if problems:
            raise GateRefused("; ".join(problems) + ". " + NEXT_STEP)
        return results

    async def _baseline(self, model: str, version: str, gate_set: GateSet) -> Score:
        """The default's score on a set, kept: it is the same version on the same photos until the default moves."""
        key = (version, gate_set.key, gate_set.photos)
        if key not in self._baselines:
            self._baselines[key] = await self._score(model, version, gate_set.photos)
        return self._baselines[key]

    async def _score(self, model: str, version: str, photos: Sequence[Path]) -> Score:
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
        correct = harmed = upright = 0
        for (status, body), (_, expected) in zip(answers, images, strict=True):
            if status != 200:
                raise GateRefused(f"a validation image got HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
            degree, trusted = _verdict(body)
            correct += degree == expected
            if expected == 0:
                upright += 1
                harmed += trusted and degree not in (None, 0)
        return Score(correct / len(images), harmed / max(1, upright))


def unseen_sources_problem(info: ArchiveInfo, max_harm: float) -> str | None:
    """Why the archive's own leave-one-source-out record (metadata.json's evaluation_by_source, carried only for
    the weights it describes) refuses it, or None. Its figures hold at its threshold with agreement required: an
    archive whose model-config.yaml serves a lower threshold, or no agreement, turns more than it measured."""
    recorded = info.metadata.get("evaluation_by_source")
    if not isinstance(recorded, dict):
        return None
    try:
        worst, group, threshold = float(recorded["worst_harm"]), str(recorded["worst_group"]), float(
            recorded["threshold"])
    except (KeyError, TypeError, ValueError):
        return "its evaluation_by_source (metadata.json) is incomplete: it needs worst_harm, worst_group, threshold"
    if worst > max_harm:
        return (f"on sources it never saw it turns {worst:.1%} of the upright photos of {group}, above "
                f"{max_harm:.1%} (PROXY_GATE_MAX_UNSEEN_HARM)")
    served = info.handler_config.get("min_confidence", 0.0)
    if not isinstance(served, (int, float)) or served < threshold:
        return (f"its model-config.yaml serves min_confidence {served}, below the {threshold:.4f} that kept harm "
                f"<= {max_harm:.1%} on every source it never saw")
    if info.handler_config.get("require_agreement", True) is not True:
        return ("its model-config.yaml sets require_agreement: false, but its harm on sources it never saw was "
                "measured with agreement required")
    return None


def _verdict(body: bytes) -> tuple[int | None, bool]:
    """(model_degree, trusted) of a JSON answer; (None, False) when it has none."""
    try:
        document = json.loads(body)
        return int(document["model_degree"]), document.get("trusted", True) is True
    except (ValueError, KeyError, TypeError):
        return None, False
