"""Per-version signals over a sliding window: what the Models view sets a canary beside the default with."""

from __future__ import annotations

import pytest

from auth_plugin.answer_verdict import verdict_of
from auth_plugin.control.signals import VersionSignals
from tests.fake_clock import Clock


def test_a_window_counts_only_its_own_seconds_per_version():
    clock = Clock()
    signals = VersionSignals(clock)
    for latency_ms in range(1, 101):  # 1..100 ms, two of them server errors, every fourth unsure
        signals.prediction("2.0", 502 if latency_ms <= 2 else 200, latency_ms / 1000,
                           None if latency_ms <= 2 else latency_ms % 4 != 0)
    signals.feedback("2.0", agreed=False)
    signals.feedback("2.0", agreed=True)
    signals.prediction("1.0", 200, 0.010, True)
    now = signals.summary("2.0", 60)
    assert (now.requests, now.errors, now.error_rate, now.feedback, now.disagreement_rate) == (100, 2, 0.02, 2, 0.5)
    assert now.p95_ms == pytest.approx(95.0) and now.unsure_share == pytest.approx(25 / 98)
    assert signals.summary("1.0", 60).requests == 1
    clock.now += 120
    assert signals.summary("2.0", 60).requests == 0 and signals.summary("2.0", 300).requests == 100
    empty = signals.summary("3.0", 60)
    assert (empty.requests, empty.error_rate, empty.p95_ms, empty.unsure_share) == (0, None, None, None)


@pytest.mark.parametrize(("status", "content_type", "headers", "body", "verdict"), [
    (200, "application/json", {}, b'{"confidence": 0.97, "trusted": true}', (0.97, True, None)),
    (200, "application/json", {}, b'{"confidence": 0.97, "trusted": true, "model_degree": 90}', (0.97, True, 90)),
    (200, "application/json", {}, b'{"confidence": 0.97, "trusted": true, "model_degree": 45}', (0.97, True, None)),
    (200, "image/jpeg", {"X-Confidence": "0.5", "X-Trusted": "false"}, b"\xff\xd8", (0.5, False, None)),
    (200, "image/jpeg", {"X-Confidence": "0.5", "X-Trusted": "false", "X-Model-Degree": "270"}, b"", (0.5, False, 270)),
    (200, "application/json", {}, b'{"confidence": "high", "trusted": true}', None),
    (200, "application/json", {}, b"[1, 2]", None),
    (200, "image/jpeg", {"X-Confidence": "2"}, b"", None),
    (400, "application/json", {}, b'{"confidence": 0.9, "trusted": true}', None),
])
def test_the_verdict_is_read_from_the_answer_or_its_headers(status, content_type, headers, body, verdict):
    assert verdict_of(status, content_type, headers, body) == verdict
