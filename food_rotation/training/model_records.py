"""What a model's files say of it, and what evaluation writes back: the weights' .json (temperature, calibration,
the recorded figures, each tied to the weights' sha256) and the rule of handler/model-config.yaml's handler:
section (min_confidence, require_agreement). Shared by scripts/evaluate.py, training/fit_head.py and the benches.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from food_rotation.handler_settings import HandlerSettings

MODEL_CONFIG = Path(__file__).resolve().parents[2] / "handler" / "model-config.yaml"


def sidecar_temperature(model: Path) -> tuple[float, str]:
    """The temperature stored beside a .pth by --write-temperature, else 1 (an uncalibrated softmax)."""
    sidecar = model.with_suffix(".json")
    if model.suffix != ".tar" and sidecar.is_file():
        value = json.loads(sidecar.read_text()).get("temperature")
        if value is not None:
            return float(value), str(sidecar)
    return 1.0, "default"


def _handler_section(config: Path) -> dict[str, Any]:
    return (yaml.safe_load(config.read_text()) or {}).get("handler") or {}


def configured_min_confidence(config: Path) -> tuple[float, str]:
    """`min_confidence` of the handler: section, what the served model uses; 0 (trust everything) if unset."""
    handler = _handler_section(config)
    if handler.get("min_confidence") is None:
        return 0.0, f"not set in {config}: every prediction trusted"
    return float(handler["min_confidence"]), str(config)


def configured_agreement(config: Path, override: bool | None = None) -> bool:
    """`override` when given (--agreement / --no-agreement), else `require_agreement` of the handler: section,
    with the handler's own default where it is unset."""
    if override is not None:
        return override
    return bool(_handler_section(config).get("require_agreement", HandlerSettings.require_agreement))


def update_sidecar(model: Path, **fields: Any) -> Path:
    """Set `fields` in the weights' .json (what scripts/archive.sh carries into the archive), keeping the rest."""
    sidecar = model.with_suffix(".json")
    info = json.loads(sidecar.read_text())
    info.update(fields)
    sidecar.write_text(json.dumps(info, indent=2) + "\n")
    return sidecar


def write_temperature(model: Path, temperature: float, calibration: dict[str, Any]) -> Path:
    """Store T and how it was fitted."""
    return update_sidecar(model, temperature=temperature, calibration=calibration)


def tied_to(model: Path, figures: dict[str, Any]) -> dict[str, Any]:
    """`figures` with the sha256 of the weights they describe: the archive carries them only for those weights."""
    return {**figures, "weights_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
            "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds")}


def write_evaluation(model: Path, evaluation: dict[str, Any]) -> Path:
    """Store the figures of this evaluation, tied to the weights' sha256."""
    return update_sidecar(model, evaluation=tied_to(model, evaluation))


def recorded_figures(figures: dict[str, Any], folders: Sequence[Path], photos: int) -> dict[str, Any]:
    """What a version says of itself: accuracy at four turns, and fix and harm at its shipped threshold."""
    upright = sum(figures["confusion"][0])
    return {"data": [str(folder) for folder in folders], "photos": photos, "accuracy": figures["accuracy"],
            "fix": figures["fix"], "harm": figures["harm"], "harmed": round(figures["harm"] * upright),
            "upright": upright, "min_confidence": figures["threshold"],
            "require_agreement": figures["require_agreement"]}


def rounded_up(threshold: float) -> float:
    """Four decimals for model-config.yaml, rounded up so that it admits no item the exact threshold refuses."""
    return math.ceil(threshold * 1e4) / 1e4
