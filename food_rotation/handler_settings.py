"""The handler's settings, read once at load time from the archive: one frozen object, passed around."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from food_rotation.photo_io import DEFAULT_MAX_FULL_DECODE_PIXELS, DEFAULT_MAX_IMAGE_PIXELS
from food_rotation.rotation_model import DEFAULT_IMAGE_SIZE

# Fixed by training and calibration, so read from metadata.json only, never from model-config.yaml.
_FROM_METADATA = frozenset({"arch", "image_size", "temperature", "turn_averaging"})
_CASTS = {"bool": bool, "float": float, "int": int}


@dataclass(frozen=True)
class HandlerSettings:
    """`arch`, `image_size`, `temperature` and `turn_averaging` come from the archive's metadata.json (they must
    match training and calibration); the rest from the `handler:` section of model-config.yaml."""

    arch: str
    image_size: int = DEFAULT_IMAGE_SIZE
    temperature: float = 1.0  # softmax(logits / T): fitted on held-out photos so that confidence means what it says
    turn_averaging: bool = False  # the photo seen at its four turns, answers averaged (RotationNet); T assumes it
    min_confidence: float = 0.0  # below this calibrated confidence a photo is left as it is (a request may override)
    require_agreement: bool = False  # a turn-averaged model's turn is trusted only when its four views each give it
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_full_decode_pixels: int = DEFAULT_MAX_FULL_DECODE_PIXELS  # see photo_io: images decoded whole
    torch_threads: int = 1  # one per worker: TorchServe runs a worker per core on a small CPU box
    jpeg_quality: int = 95
    # One answer's most bytes: TorchServe kills the worker whose answer is over max_response_size (25 MiB in
    # config.properties), so an upright image over this is refused (422) before it gets there.
    max_answer_bytes: int = 24 * 2**20
    channels_last: bool = True
    freeze: bool = True  # TorchScript trace + freeze at load: half the forward time (bench/TUNING.md)

    def __post_init__(self) -> None:
        """A bad value fails the model's load, where it is seen, rather than every prediction."""
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature (metadata.json) must be a positive number, got {self.temperature}")
        if not 0 <= self.min_confidence <= 1:  # NaN fails this too
            raise ValueError(f"min_confidence (model-config.yaml) must be from 0 to 1, got {self.min_confidence}")

    @classmethod
    def from_archive(cls, metadata: Mapping[str, Any], handler_config: Mapping[str, Any] | None) -> HandlerSettings:
        types = {f.name: str(f.type) for f in fields(cls)}
        overrides = dict(handler_config or {})
        unknown = sorted(set(overrides) - (set(types) - _FROM_METADATA))
        if unknown:
            raise ValueError(f"unknown handler settings in model-config.yaml: {', '.join(unknown)}")
        temperature = metadata.get("temperature")
        return cls(
            arch=str(metadata["arch"]),
            image_size=int(metadata.get("image_size", DEFAULT_IMAGE_SIZE)),
            temperature=1.0 if temperature is None else float(temperature),
            turn_averaging=bool(metadata.get("turn_averaging", False)),
            **{key: _CASTS[types[key]](value) for key, value in overrides.items()},
        )
