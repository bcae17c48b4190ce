"""How each version is doing right now: requests, server errors, latency, unsure answers and corrections per
version over a sliding window, kept in memory by the gateway that forwards the traffic.

Prometheus has the same counts as cumulative series (auth_plugin/proxy_metrics.py) for dashboards and alerts;
this window is what the Models view compares a canary against the default with, and what an automatic canary
analysis would read, without a Prometheus server in between.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

BUCKET_S = 10.0  # the window moves in steps of this many seconds
KEEP_S = 3600.0  # the longest window anyone may ask for
LATENCY_SAMPLES_PER_BUCKET = 256  # enough for a p95; a busy bucket keeps every n-th latency


@dataclass
class _Bucket:
    start: float
    requests: int = 0
    errors: int = 0  # answers of 5xx: the service failed the caller
    answered: int = 0  # predictions with a verdict (2xx JSON or image)
    unsure: int = 0
    feedback: int = 0
    disagreed: int = 0  # feedback whose true turn differs from the model's
    latencies_ms: list[float] = field(default_factory=list)
    latency_seen: int = 0

    def add_latency(self, ms: float) -> None:
        self.latency_seen += 1
        if len(self.latencies_ms) < LATENCY_SAMPLES_PER_BUCKET:
            self.latencies_ms.append(ms)
        else:  # reservoir sampling keeps an unbiased sample of the bucket
            slot = random.randrange(self.latency_seen)
            if slot < LATENCY_SAMPLES_PER_BUCKET:
                self.latencies_ms[slot] = ms


@dataclass(frozen=True)
class Summary:
    """One version over one window; rates are None where nothing was counted to divide by."""

    version: str
    window_s: float
    requests: int
    errors: int
    error_rate: float | None
    p95_ms: float | None
    unsure_share: float | None
    feedback: int
    disagreement_rate: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class VersionSignals:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, deque[_Bucket]] = {}

    def _bucket(self, version: str) -> _Bucket:
        now = self._clock()
        start = now - now % BUCKET_S
        buckets = self._buckets.setdefault(version, deque())
        if not buckets or buckets[-1].start != start:
            buckets.append(_Bucket(start))
            while buckets and buckets[0].start < now - KEEP_S:
                buckets.popleft()
        return buckets[-1]

    def prediction(self, version: str, status: int, latency_s: float, trusted: bool | None) -> None:
        """One answered prediction; `trusted` None when the answer carried no verdict (an error, a refusal)."""
        bucket = self._bucket(version)
        bucket.requests += 1
        bucket.errors += status >= 500
        bucket.add_latency(latency_s * 1000)
        if trusted is not None:
            bucket.answered += 1
            bucket.unsure += not trusted

    def feedback(self, version: str, agreed: bool) -> None:
        bucket = self._bucket(version)
        bucket.feedback += 1
        bucket.disagreed += not agreed

    def summary(self, version: str, window_s: float) -> Summary:
        since = self._clock() - window_s
        buckets = [b for b in self._buckets.get(version, ()) if b.start + BUCKET_S > since]
        total = sum(b.requests for b in buckets)
        errors = sum(b.errors for b in buckets)
        answered, unsure = sum(b.answered for b in buckets), sum(b.unsure for b in buckets)
        feedback, disagreed = sum(b.feedback for b in buckets), sum(b.disagreed for b in buckets)
        return Summary(version, window_s, total, errors, _rate(errors, total),
                       _p95([ms for b in buckets for ms in b.latencies_ms]), _rate(unsure, answered), feedback,
                       _rate(disagreed, feedback))
