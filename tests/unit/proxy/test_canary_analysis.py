"""Automatic canary analysis against the fake TorchServe admin and gate, with signals fed as traffic would: a
good canary promotes itself, a worse one is retired with the reason, one without traffic is left to a person."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from auth_plugin.control.canary_analysis import CanaryAnalyst, CanaryPolicy, breach
from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.control.history import History
from auth_plugin.control.signals import Summary, VersionSignals
from auth_plugin.control.steps.rollout import Rollouts, RolloutSettings
from food_rotation.service_error import ServiceError
from tests.archives import write_mar
from tests.unit.proxy.fakes import FakeAdmin, FakeGate

MODEL = "food_rotation"
QUICK = CanaryPolicy(steps=(20.0, 60.0), step_s=1.0, min_requests=5, check_every_s=0.05, max_wait_steps=2.0)


@pytest.fixture
async def plane(tmp_path):
    for version in ("1.0", "2.0"):
        write_mar(tmp_path / f"{MODEL}-v{version}.mar", MODEL, version)
    registry = VersionRegistry(tmp_path / "db.sqlite3")
    registry.add_version(MODEL, "1.0", f"{MODEL}-v1.0.mar")
    registry.set_route(MODEL, Route(default="1.0"))
    rollouts = Rollouts(FakeAdmin({"1.0": f"{MODEL}-v1.0.mar"}, "1.0"), registry, FakeGate(),
                        RolloutSettings(model_store=tmp_path, drain_timeout_s=1.0), History(tmp_path / "db.sqlite3"))
    signals = VersionSignals()
    analyst = CanaryAnalyst(rollouts, registry, signals)
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar")
    yield rollouts, registry, signals, analyst
    await analyst.stop()
    registry.close()


@contextlib.asynccontextmanager
async def traffic(signals: VersionSignals, canary_trusted: bool):
    async def feed() -> None:
        while True:
            signals.prediction("1.0", 200, 0.02, True)
            signals.prediction("2.0", 200, 0.02, canary_trusted)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()


async def finished(analyst: CanaryAnalyst, timeout_s: float = 10.0) -> str:
    for _ in range(int(timeout_s / 0.05)):
        if analyst.latest[MODEL].state != "running":
            return analyst.latest[MODEL].state
        await asyncio.sleep(0.05)
    raise AssertionError("the analysis did not end")


async def test_a_canary_within_bounds_steps_up_and_promotes_itself(plane):
    rollouts, registry, signals, analyst = plane
    async with traffic(signals, canary_trusted=True):
        analyst.start(MODEL, "2.0", QUICK)
        assert await finished(analyst) == "promoted"
    assert registry.route(MODEL).default == "2.0" and analyst.latest[MODEL].step == 2
    assert rollouts.history.defaults(MODEL)[-1].actor == "auto-canary"
    assert rollouts.history.audit_entries(1)[0].action == "auto_promoted"


async def test_a_worse_canary_is_retired_at_once_with_the_reason(plane):
    rollouts, registry, signals, analyst = plane
    async with traffic(signals, canary_trusted=False):
        analyst.start(MODEL, "2.0", QUICK)
        assert await finished(analyst, timeout_s=2.0) == "rolled_back"
    assert analyst.latest[MODEL].step == 1 and "unsure answers 100.0%" in analyst.latest[MODEL].reason
    assert registry.route(MODEL) == Route(default="1.0") and set(registry.versions(MODEL)) == {"1.0"}
    assert rollouts.history.audit_entries(1)[0].outcome.startswith("unsure answers")


async def test_a_canary_without_traffic_is_left_for_a_person(plane):
    _, registry, _, analyst = plane
    analyst.start(MODEL, "2.0", QUICK)
    with pytest.raises(ServiceError) as busy:
        analyst.start(MODEL, "2.0", QUICK)
    assert (busy.value.status, busy.value.code) == (409, "analysis_running")
    assert await finished(analyst) == "inconclusive"
    assert registry.route(MODEL).canary == "2.0" and registry.route(MODEL).canary_percent == 20


async def test_a_hand_on_the_canary_stops_the_analysis(plane):
    rollouts, registry, signals, analyst = plane
    async with traffic(signals, canary_trusted=True):
        analyst.start(MODEL, "2.0", QUICK)
        await asyncio.sleep(0.2)
        await rollouts.retire(MODEL, "2.0")
        assert await finished(analyst) == "stopped"
    assert registry.route(MODEL) == Route(default="1.0")


def _summary(**figures) -> Summary:
    base = {"version": "v", "window_s": 60, "requests": 100, "errors": 0, "error_rate": 0.0, "p95_ms": 100.0,
            "unsure_share": 0.1, "feedback": 0, "disagreement_rate": None}
    return Summary(**{**base, **figures})


@pytest.mark.parametrize(("canary", "reason"), [
    (_summary(), None),
    (_summary(error_rate=0.05), "server errors 5.0%"),
    (_summary(p95_ms=300.0), "p95 latency 300 ms"),
    (_summary(p95_ms=190.0), None),  # 1.5 x 100 + 50 ms of slack
    (_summary(feedback=3, disagreement_rate=1.0), None),  # too few corrections to judge by
    (_summary(feedback=6, disagreement_rate=0.5), "corrections say it was wrong 50.0%"),
])
def test_each_bound(canary, reason):
    default = _summary(feedback=6, disagreement_rate=0.1)
    found = breach(canary, default, CanaryPolicy())
    assert found == reason if reason is None else found.startswith(reason)


@pytest.mark.parametrize("value", [{"steps": [0]}, {"steps": "fast"}, {"nope": 1}, "yes", {"step_s": 0}])
def test_a_bad_policy_is_a_400(value):
    with pytest.raises(ServiceError) as refused:
        CanaryPolicy.from_request(value)
    assert (refused.value.status, refused.value.code) == (400, "bad_auto_policy")
