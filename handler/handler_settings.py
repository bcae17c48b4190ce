"""The handler's settings, read once at load time from the archive: one frozen object, passed around."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from rotation_model import DEFAULT_IMAGE_SIZE


@dataclass(frozen=True)
class HandlerSettings:
    """`arch` and `image_size` come from the archive's metadata.json (they must match training);
    the rest from the `handler:` section of model-config.yaml."""

    arch: str
    image_size: int = DEFAULT_IMAGE_SIZE
    max_image_pixels: int = 100_000_000  # above a 50 MP phone photo, below a decompression bomb
    torch_threads: int = 1  # one per worker: TorchServe runs a worker per core on a small CPU box
    jpeg_quality: int = 95
    # One answer's most bytes: TorchServe kills the worker whose answer is over max_response_size (25 MiB in
    # config.properties), so an upright image over this is refused (422) before it gets there.
    max_answer_bytes: int = 24 * 2**20
    channels_last: bool = True

    @classmethod
    def from_archive(cls, metadata: Mapping[str, Any], handler_config: Mapping[str, Any] | None) -> HandlerSettings:
        tunable = {f.name for f in fields(cls)} - {"arch", "image_size"}
        overrides = dict(handler_config or {})
        unknown = sorted(set(overrides) - tunable)
        if unknown:
            raise ValueError(f"unknown handler settings in model-config.yaml: {', '.join(unknown)}")
        types = {f.name: f.type for f in fields(cls)}
        return cls(
            arch=str(metadata["arch"]),
            image_size=int(metadata.get("image_size", DEFAULT_IMAGE_SIZE)),
            **{key: bool(value) if types[key] == "bool" else int(value) for key, value in overrides.items()},
        )
