"""What a prediction answer says of its own verdict (confidence, trusted), for the per-version signals: the JSON
answer's fields, or the X-Confidence and X-Trusted headers of an image answer. Anything else says nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import NamedTuple

MAX_JSON_BYTES = 1 << 16  # a verdict is a few hundred bytes; anything bigger is not one


def trusted_by_the_archive(headers: Mapping[str, str], verdict: tuple[float, bool] | None) -> bool | None:
    """Whether the version, at its own bar, trusted the answer (the handler's X-Archive-Trusted), else the
    answer's `trusted`: what the canary analysis counts, never a caller's own min_confidence."""
    own = {"true": True, "false": False}.get(headers.get("X-Archive-Trusted", ""))
    return own if own is not None else (None if verdict is None else verdict[1])


class Verdict(NamedTuple):
    confidence: float
    trusted: bool
    model_degree: int | None = None  # the turn it answered (what an answer id vouches for), where it says one


def verdict_of(status: int, content_type: str, headers: Mapping[str, str], body: bytes) -> Verdict | None:
    """(confidence, trusted, model_degree) of a 200 answer, or None when it carries no verdict."""
    if status != 200:
        return None
    if content_type == "application/json":
        if len(body) > MAX_JSON_BYTES:
            return None
        try:
            document = json.loads(body)
        except ValueError:
            return None
        if not isinstance(document, dict):
            return None
        confidence, trusted, degree = document.get("confidence"), document.get("trusted"), document.get("model_degree")
    else:
        confidence, trusted = headers.get("X-Confidence"), {"true": True, "false": False}.get(
            headers.get("X-Trusted", ""))
        degree = headers.get("X-Model-Degree")
    try:
        confidence = float(confidence)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not (isinstance(trusted, bool) and 0 <= confidence <= 1):
        return None
    return Verdict(confidence, trusted, _degree(degree))


def _degree(value: object) -> int | None:
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    return int(text) if text in {"0", "90", "180", "270"} else None
