"""Pods on one shared database: their reports, the waits a rollout makes on them, the one-driver lock, and the
routing and reconciling that keep a pod from sending traffic to a version it has not loaded (or unloading one
it still has requests on). The reports and rollouts run on SQLite and a real PostgreSQL (open_db); the lock on
PostgreSQL only, the one backend that has it."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from auth_plugin.control.actual.pods import DriverBusy, DriverLock, PodReports
from auth_plugin.control.desired.intents import RolloutIntents
from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.control.history import History
from auth_plugin.control.steps.reconciler import Reconciler
from auth_plugin.control.steps.rollout import Rollouts, RolloutSettings
from auth_plugin.database import AdvisoryLock
from auth_plugin.migrations import open_database
from auth_plugin.settings import ProxySettings
from food_rotation.service_error import ServiceError
from tests.archives import write_mar
from tests.unit.proxy.fakes import FakeAdmin, FakeGate

MODEL = "food_rotation"


@pytest.fixture
def reports(open_db):
    """Two pods' reports on one database: (pod-a's, pod-b's)."""
    pods = PodReports(open_db(), "pod-a", live_after_s=5.0), PodReports(open_db(), "pod-b", live_after_s=5.0)
    yield pods
    for pod in pods:
        pod.close()


def test_each_pod_reports_its_own_row_and_a_stale_or_withdrawn_pod_is_not_live(reports):
    a, b = reports
    a.report(MODEL, {"1.0": 2, "2.0": 1}, {"1.0": 3})
    b.report(MODEL, {"1.0": 2}, {})
    a.report(MODEL, {"1.0": 2, "2.0": 2}, {"2.0": 1})  # the next heartbeat replaces the row
    live = {report.pod: report for report in a.live(MODEL)}
    assert set(live) == {"pod-a", "pod-b"}
    assert (live["pod-a"].workers("2.0"), live["pod-a"].in_flight("1.0"), live["pod-a"].in_flight("2.0")) == (2, 0, 1)
    assert live["pod-b"].workers("2.0") == 0 and a.live("another_model") == []
    b.withdraw(MODEL)
    assert [report.pod for report in a.live(MODEL)] == ["pod-a"]
    stale = PodReports(None, "", 0.0)
    assert not stale.shared and stale.live(MODEL) == []  # one machine: nothing is reported or read
    a.live_after_s = 0.0
    assert a.live(MODEL) == []  # no heartbeat within live_after_s: a dead pod is not waited for


async def test_a_wait_ends_when_every_live_pod_is_done_and_names_the_ones_that_are_not(reports):
    a, b = reports
    a.report(MODEL, {"1.0": 1, "2.0": 1}, {})
    b.report(MODEL, {"1.0": 1}, {})
    loaded = lambda report: report.workers("2.0") > 0  # noqa: E731
    assert await a.wait_for(MODEL, loaded, timeout_s=0.3) == ["pod-b"]
    asyncio.get_running_loop().call_later(0.3, b.report, MODEL, {"1.0": 1, "2.0": 1}, {})
    assert await a.wait_for(MODEL, loaded, timeout_s=5.0) == []
    since = time.time() + 0.01  # reports made before a change do not count as done with it
    await asyncio.sleep(0.02)
    a.report(MODEL, {"1.0": 1, "2.0": 1}, {})
    assert await a.wait_for(MODEL, lambda report: True, timeout_s=0.3, since=since) == ["pod-b"]


async def test_one_driver_at_a_time_and_a_dead_drivers_lock_is_taken_over(postgres):
    settings = ProxySettings(database_url=postgres.database())
    first, second = (DriverLock(AdvisoryLock(open_database(settings))) for _ in range(2))
    async with first.held(MODEL):
        with pytest.raises(DriverBusy) as busy:
            async with second.held(MODEL, wait_s=0.3):
                pass
        assert (busy.value.status, busy.value.code) == (409, "another_driver")
        async with second.held("another_model", wait_s=0.3):  # a lock per model
            pass
    async with second.held(MODEL, wait_s=0.3):  # released at the end of the transition
        pass
    crashed = DriverLock(AdvisoryLock(open_database(settings)))
    entered = crashed.held(MODEL)
    await entered.__aenter__()  # a driver that dies mid-rollout never leaves the block...
    crashed.close()  # ...but its connection goes, and PostgreSQL drops its lock
    async with second.held(MODEL, wait_s=2.0):
        pass
    first.close()
    second.close()


def test_a_pod_routes_only_to_versions_its_own_torchserve_has_live(tmp_path):
    registry = VersionRegistry(tmp_path / "db.sqlite3", rng=random.Random(0))
    registry.add_version(MODEL, "1.0", "a.mar")
    registry.add_version(MODEL, "2.0", "b.mar")
    registry.set_route(MODEL, Route(default="1.0").with_canary("2.0", 50))
    assert {registry.choose(MODEL) for _ in range(50)} == {"1.0", "2.0"}  # live state unknown: the table decides
    registry.observe_live(MODEL, {"1.0": 2, "2.0": 0})  # 2.0 still loading on this pod
    assert {registry.choose(MODEL) for _ in range(50)} == {"1.0"}
    assert registry.serving(MODEL, "1.0") and not registry.serving(MODEL, "2.0")  # /readyz waits for it
    with registry.pending(MODEL, "1.0"):
        assert not registry.serving(MODEL, "1.0")  # loaded, not gated yet
    registry.mark_live(MODEL, "2.0")
    assert {registry.choose(MODEL) for _ in range(50)} == {"1.0", "2.0"}
    registry.set_route(MODEL, Route(default="3.0", previous="1.0", previous_archive="a.mar"))
    assert registry.choose(MODEL) == "1.0"  # the new default is not loaded here yet: the previous one serves
    registry.close()


async def test_a_reconciler_unloads_a_version_gone_from_the_table_only_once_its_requests_are_answered(tmp_path):
    admin = FakeAdmin({"1.0": "a.mar", "2.0": "b.mar"}, "2.0")
    registry = VersionRegistry(tmp_path / "db.sqlite3")
    registry.add_version(MODEL, "2.0", "b.mar")
    registry.set_route(MODEL, Route(default="2.0"))
    history = History(tmp_path / "db.sqlite3")
    reconciler = Reconciler(admin, registry, history, RolloutSettings(model_store=tmp_path), asyncio.Lock())
    with registry.in_flight(MODEL, "1.0"):
        await reconciler.reconcile(MODEL)
        assert ("unregister", "1.0") not in admin.calls and "1.0" in admin.live
    await reconciler.reconcile(MODEL)
    assert ("unregister", "1.0") in admin.calls
    registry.close()
    history.close()


async def test_a_pod_gates_what_its_reconciler_loads_and_keeps_it_out_of_traffic_until_then(tmp_path):
    """Registered but not yet gated, a version is not live here (the heartbeat may describe it meanwhile); a version
    this pod's copy fails is unloaded, never reported, and not loaded again every round."""
    for version in ("2.0", "3.0"):
        (tmp_path / f"m-v{version}.mar").write_bytes(b"archive")
    admin = FakeAdmin({"1.0": "m.mar"}, "1.0")
    registry = VersionRegistry(tmp_path / "db.sqlite3")
    for version, archive in (("1.0", "m.mar"), ("2.0", "m-v2.0.mar"), ("3.0", "m-v3.0.mar")):
        registry.add_version(MODEL, version, archive)
    registry.set_route(MODEL, Route(default="1.0"))
    seen_while_gating = []

    class Gate(FakeGate):
        async def check(self, model, version, held_out=(), baseline=None):
            registry.observe_live(MODEL, {state.version: state.workers for state in await admin.versions(MODEL)})
            seen_while_gating.append(dict(registry.live_workers(MODEL)))  # what a heartbeat would route by
            return await super().check(model, version, held_out, baseline)

    gate = Gate(refuse=["3.0"])
    history = History(tmp_path / "db.sqlite3")
    reconciler = Reconciler(admin, registry, history, RolloutSettings(model_store=tmp_path), asyncio.Lock(), gate)
    await reconciler.reconcile(MODEL)
    assert gate.checked == ["2.0", "3.0"] and gate.baselines == [None, None]  # absolute checks, no comparison
    assert "2.0" not in seen_while_gating[0] and "3.0" not in seen_while_gating[1]
    assert set(admin.live) == {"1.0", "2.0"} and set(registry.live_workers(MODEL)) == {"1.0", "2.0"}
    await reconciler.reconcile(MODEL)
    assert gate.checked == ["2.0", "3.0"] and admin.calls.count(("register", "m-v3.0.mar")) == 1
    registry.close()
    history.close()


@pytest.fixture
def driver(tmp_path, open_db, reports):
    """pod-a drives (1.0 deployed and default; an archive for 2.0); pod-b is another live pod."""
    write_mar(tmp_path / f"{MODEL}-v2.0.mar", MODEL, "2.0")
    admin = FakeAdmin({"1.0": f"{MODEL}-v1.0.mar"}, "1.0")
    registry = VersionRegistry(open_db())
    history = History(open_db())
    settings = RolloutSettings(model_store=tmp_path, register_timeout_s=0.5, drain_timeout_s=2.0)
    rollouts = Rollouts(admin, registry, FakeGate(), settings, history, pods=reports[0])
    registry.add_version(MODEL, "1.0", f"{MODEL}-v1.0.mar")
    registry.set_route(MODEL, Route(default="1.0"))
    yield rollouts, registry, reports
    registry.close()
    history.close()


async def test_a_canary_is_routed_only_once_every_live_pod_has_loaded_it(driver):
    rollouts, registry, (a, b) = driver
    a.report(MODEL, {"1.0": 1}, {})
    b.report(MODEL, {"1.0": 1}, {})
    with pytest.raises(ServiceError) as not_ready:
        await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=10)
    assert (not_ready.value.status, not_ready.value.code) == (504, "pods_not_ready")
    assert "pod-a, pod-b" in not_ready.value.message
    assert "2.0" in registry.versions(MODEL) and registry.route(MODEL) == Route(default="1.0")  # loaded, no share
    for pod in (a, b):
        pod.report(MODEL, {"1.0": 1, "2.0": 1}, {})
    assert (await rollouts.set_canary(MODEL, "2.0", 10))["canary_percent"] == 10
    assert registry.route(MODEL) == Route(default="1.0", canary="2.0", canary_percent=10)


async def test_an_old_default_leaves_the_table_once_no_pod_has_requests_on_it(driver):
    rollouts, registry, (a, b) = driver
    registry.add_version(MODEL, "2.0", f"{MODEL}-v2.0.mar")
    for pod in (a, b):
        pod.report(MODEL, {"1.0": 1, "2.0": 1}, {})
    loop = asyncio.get_running_loop()
    for delay in (0.1, 0.2):  # heartbeats made after the switch: pod-b still answering one request on 1.0
        loop.call_later(delay, b.report, MODEL, {"1.0": 1, "2.0": 1}, {"1.0": 1})
        loop.call_later(delay, a.report, MODEL, {"1.0": 1, "2.0": 1}, {})
    loop.call_later(0.35, b.report, MODEL, {"1.0": 1, "2.0": 1}, {})  # answered
    started = time.monotonic()
    await rollouts.promote(MODEL, "2.0")
    assert 0.3 <= time.monotonic() - started < 1.5  # waited for pod-b, not for the drain timeout (2 s)
    assert set(registry.versions(MODEL)) == {"2.0"} and registry.route(MODEL).default == "2.0"


@pytest.fixture
def takeover(tmp_path, open_db, reports):
    """pod-b's control plane on a table a dead driver (pod-a) left: 1.0 and 2.0 deployed."""
    write_mar(tmp_path / f"{MODEL}-v2.0.mar", MODEL, "2.0")
    admin = FakeAdmin({"1.0": f"{MODEL}-v1.0.mar", "2.0": f"{MODEL}-v2.0.mar"}, "1.0")
    registry, history = VersionRegistry(open_db()), History(open_db())
    dead, intents = RolloutIntents(open_db(), "pod-a"), RolloutIntents(open_db(), "pod-b")
    rollouts = Rollouts(admin, registry, FakeGate(), RolloutSettings(model_store=tmp_path, drain_timeout_s=0.5),
                        history, pods=reports[1], intents=intents)
    registry.add_version(MODEL, "1.0", f"{MODEL}-v1.0.mar")
    registry.add_version(MODEL, "2.0", f"{MODEL}-v2.0.mar")
    yield rollouts, registry, admin, dead, history
    for resource in (registry, history, dead, intents):
        resource.close()


@pytest.mark.parametrize(("action", "route", "left"), [
    ("promote", Route(default="2.0", previous="1.0"), {"2.0"}),  # switched, died draining: 1.0 drained and out
    ("deploy", Route(default="1.0"), {"1.0"}),  # in the table, never given traffic: out again
    ("promote", Route(default="1.0", canary="2.0", canary_percent=10), {"1.0", "2.0"}),  # nothing had changed
])
async def test_a_transition_a_dead_driver_left_half_done_is_ended_by_the_next_one(takeover, action, route, left):
    rollouts, registry, admin, dead, history = takeover
    registry.set_route(MODEL, route)
    dead.begin(MODEL, action, "2.0", "1.0")  # then pod-a died: its lock went with its connection
    task = asyncio.create_task(rollouts.recover_forever(MODEL, every_s=0.05))
    await asyncio.sleep(0.5)
    task.cancel()
    assert set(registry.versions(MODEL)) == left and set(admin.live) == left
    assert dead.pending(MODEL) is None
    entry = history.audit_entries(1)[0]
    assert (entry.actor, entry.action) == ("pod-b (took over from pod-a)", f"recover {action}")


async def test_the_next_driver_acts_on_the_table_the_dead_one_left_not_on_its_own_cached_copy(takeover, open_db):
    """pod-b's cached route still has 1.0 as the default when pod-a, having just switched it to 2.0, dies: its
    background reread is up to a second old, and the lock frees at once. The promotion is finished all the same."""
    rollouts, registry, admin, dead, history = takeover
    registry.set_route(MODEL, Route(default="1.0", canary="2.0", canary_percent=10))  # what pod-b has cached
    pod_a = VersionRegistry(open_db())
    pod_a.set_route(MODEL, Route(default="2.0", previous="1.0"))  # pod-a's switch, which pod-b has not reread
    dead.begin(MODEL, "promote", "2.0", "1.0")
    pod_a.close()
    await recover_for_a_while(rollouts)
    assert set(registry.versions(MODEL)) == {"2.0"} and set(admin.live) == {"2.0"}
    assert registry.route(MODEL).default == "2.0" and history.audit_entries(1)[0].action == "recover promote"


async def test_a_driver_clears_what_it_recorded_however_its_transition_ends(takeover):
    rollouts, registry, _, dead, _ = takeover
    registry.set_route(MODEL, Route(default="1.0", canary="2.0", canary_percent=10))
    await rollouts.promote(MODEL, "2.0")
    with pytest.raises(ServiceError):
        await rollouts.retire(MODEL, "2.0")  # refused: the default
    assert dead.pending(MODEL) is None and set(registry.versions(MODEL)) == {"2.0"}


async def recover_for_a_while(rollouts: Rollouts) -> None:
    task = asyncio.create_task(rollouts.recover_forever(MODEL, every_s=0.05))
    await asyncio.sleep(0.5)
    task.cancel()


async def test_a_canary_whose_analysis_died_with_its_gateway_is_rolled_back_and_a_live_one_is_left_alone(
        takeover, reports):
    rollouts, registry, _, dead, history = takeover
    registry.set_route(MODEL, Route(default="1.0", canary="2.0", canary_percent=10))
    dead.begin(MODEL, "analyse", "2.0", "1.0")
    reports[0].report(MODEL, {"1.0": 1, "2.0": 1}, {})  # pod-a still reports: its analysis is at work
    await recover_for_a_while(rollouts)
    assert registry.route(MODEL).canary == "2.0" and dead.pending(MODEL) is not None
    reports[0].withdraw(MODEL)  # pod-a gone
    await recover_for_a_while(rollouts)
    assert registry.route(MODEL) == Route(default="1.0") and set(registry.versions(MODEL)) == {"1.0"}
    assert history.audit_entries(1)[0].action == "recover analyse" and dead.pending(MODEL) is None


async def test_this_gateways_own_running_analysis_is_not_taken_for_a_dead_one(takeover):
    rollouts, registry, _, dead, _ = takeover
    registry.set_route(MODEL, Route(default="1.0", canary="2.0", canary_percent=10))
    rollouts.analysis_started(MODEL, "2.0")
    await rollouts.set_canary(MODEL, "2.0", 50)  # a step of the analysis: a transition that records nothing
    await recover_for_a_while(rollouts)
    assert registry.route(MODEL).canary_percent == 50 and dead.pending(MODEL).action == "analyse"
    rollouts.analysis_ended(MODEL)
    assert dead.pending(MODEL) is None
