"""The rollout state machine (deploy -> gate -> canary -> promote with drain -> rollback -> retire) against a fake
TorchServe admin and gate: every transition and refusal in milliseconds. tests/integration/test_rollout.py runs
the same flow on a real TorchServe under load."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.control.history import History
from auth_plugin.control.steps.rollout import Rollouts, RolloutSettings
from food_rotation.service_error import ServiceError
from tests.archives import write_mar
from tests.unit.proxy.fakes import FakeAdmin, FakeGate

MODEL = "food_rotation"


@pytest.fixture
def plane(tmp_path, open_db):
    """Version 1.0 deployed and default; archives for 2.0 and 3.0 in the model store. The routing table and the
    history run on SQLite and on PostgreSQL (open_db)."""
    for version in ("1.0", "2.0", "3.0"):
        write_mar(tmp_path / f"{MODEL}-v{version}.mar", MODEL, version)
    admin = FakeAdmin({"1.0": f"{MODEL}-v1.0.mar"}, "1.0")
    registry = VersionRegistry(open_db())
    gate = FakeGate()
    settings = RolloutSettings(model_store=tmp_path, drain_timeout_s=2.0)
    history = History(open_db())
    rollouts = Rollouts(admin, registry, gate, settings, history)
    registry.add_version(MODEL, "1.0", f"{MODEL}-v1.0.mar")
    registry.set_route(MODEL, Route(default="1.0"))
    yield rollouts, registry, admin, gate
    registry.close()
    history.close()


async def test_deploy_registers_gates_and_routes_the_canary_share(plane):
    rollouts, registry, admin, gate = plane
    answer = await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=10)
    assert answer == {"model": MODEL, "version": "2.0", "gate_accuracy": 1.0, "canary_percent": 10}
    assert admin.calls == [("register", f"{MODEL}-v2.0.mar")] and gate.checked == ["2.0"]
    assert registry.route(MODEL) == Route(default="1.0", canary="2.0", canary_percent=10)


async def test_a_version_the_gate_refuses_is_unregistered_and_nothing_else_changes(plane):
    rollouts, registry, admin, gate = plane
    gate.refuse.add("2.0")
    with pytest.raises(ServiceError) as refused:
        await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=50)
    assert (refused.value.status, refused.value.code) == (422, "gate_refused") and "0.250" in refused.value.message
    assert admin.calls[-1] == ("unregister", "2.0") and "2.0" not in admin.live
    assert registry.route(MODEL) == Route(default="1.0") and set(registry.versions(MODEL)) == {"1.0"}


async def test_workers_that_never_start_are_a_gate_refusal(plane):
    rollouts, registry, admin, _ = plane
    admin.broken.add(f"{MODEL}-v2.0.mar")
    with pytest.raises(ServiceError) as refused:
        await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar")
    assert (refused.value.status, refused.value.code) == (422, "gate_refused")
    assert "workers did not start" in refused.value.message and set(registry.versions(MODEL)) == {"1.0"}


@pytest.mark.parametrize(("archive", "canary", "status", "code"), [
    (f"{MODEL}-v1.0.mar", 0, 409, "version_exists"),
    ("../etc/passwd.mar", 0, 400, "bad_archive_name"),
    ("missing.mar", 0, 404, "archive_not_found"),
    (f"{MODEL}-v2.0.mar", 150, 400, "bad_canary"),
])
async def test_deploy_refusals(plane, archive, canary, status, code):
    rollouts, registry, admin, _ = plane
    with pytest.raises(ServiceError) as refused:
        await rollouts.deploy(MODEL, archive, canary_percent=canary)
    assert (refused.value.status, refused.value.code) == (status, code)
    assert admin.calls == [] and registry.route(MODEL) == Route(default="1.0")


async def test_canary_share_moves_and_the_default_cannot_be_its_own_canary(plane):
    rollouts, registry, _, _ = plane
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=10)
    await rollouts.set_canary(MODEL, "2.0", 50)
    assert registry.route(MODEL).canary_percent == 50
    with pytest.raises(ServiceError) as refused:
        await rollouts.set_canary(MODEL, "1.0", 10)
    assert refused.value.code == "is_default"
    with pytest.raises(ServiceError) as unknown:
        await rollouts.set_canary(MODEL, "9.9", 10)
    assert (unknown.value.status, unknown.value.code) == (404, "unknown_version")


async def test_promote_waits_for_requests_in_flight_on_the_old_default_before_unregistering_it(plane):
    rollouts, registry, admin, _ = plane
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=10)
    release = asyncio.Event()

    async def request_on_1_0() -> None:
        with registry.in_flight(MODEL, "1.0"):
            await release.wait()

    in_flight = asyncio.create_task(request_on_1_0())
    await asyncio.sleep(0)
    promotion = asyncio.create_task(rollouts.promote(MODEL))
    await asyncio.sleep(0.2)
    assert not promotion.done() and "1.0" in admin.live  # draining: 1.0 still serves its request
    assert admin.default == "2.0" and registry.route(MODEL).default == "2.0"  # new requests already go to 2.0
    release.set()
    assert await promotion == {"model": MODEL, "default": "2.0", "retired": "1.0"}
    await in_flight
    assert admin.calls[-2:] == [("set_default", "2.0"), ("unregister", "1.0")]
    assert registry.route(MODEL) == Route(default="2.0", previous="1.0", previous_archive=f"{MODEL}-v1.0.mar")


async def test_on_a_shared_database_the_old_default_outlives_the_other_gateways_next_reread(plane, open_db):
    rollouts, _, admin, _ = plane
    rollouts._settings = dataclasses.replace(rollouts._settings, other_gateways_grace_s=0.4)
    other = VersionRegistry(open_db())  # another gateway, predictions only, following the shared table
    assert other.route(MODEL).default == "1.0"
    follower = asyncio.create_task(other.follow(0.05))
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=10)
    promotion = asyncio.create_task(rollouts.promote(MODEL))
    await asyncio.sleep(0.25)
    assert other.route(MODEL).default == "2.0" and "1.0" in admin.live  # it moved on; 1.0 still serves
    assert await promotion == {"model": MODEL, "default": "2.0", "retired": "1.0"}
    assert "1.0" not in admin.live
    follower.cancel()
    other.close()


async def test_rollback_reregisters_gates_and_restores_the_previous_default(plane):
    rollouts, registry, admin, gate = plane
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=10)
    await rollouts.promote(MODEL)
    assert await rollouts.rollback(MODEL) == {"model": MODEL, "default": "1.0", "retired": "2.0"}
    assert gate.checked == ["2.0", "1.0"]  # the restored version is gated again
    assert gate.baselines == ["1.0", None]  # a deploy is compared with the default, a rollback with nothing
    assert admin.default == "1.0" and set(admin.live) == {"1.0"}
    assert registry.route(MODEL).default == "1.0" and set(registry.versions(MODEL)) == {"1.0"}


async def test_rollback_steps_back_through_the_history_and_never_toggles(plane):
    rollouts, registry, _, _ = plane
    for version in ("2.0", "3.0"):
        await rollouts.deploy(MODEL, f"{MODEL}-v{version}.mar")
        await rollouts.promote(MODEL, version, actor="ana")
    assert rollouts.rollback_target(MODEL).version == "2.0"
    assert (await rollouts.rollback(MODEL, actor="ben"))["default"] == "2.0"
    assert (await rollouts.rollback(MODEL, actor="ben"))["default"] == "1.0"  # 3.0 is not come back to
    with pytest.raises(ServiceError) as refused:
        await rollouts.rollback(MODEL)
    assert (refused.value.status, refused.value.code) == (409, "no_previous_version")
    assert rollouts.rollback_target(MODEL) is None
    assert (await rollouts.rollback(MODEL, "3.0", actor="ana"))["default"] == "3.0"  # by name: any earlier default
    changes = [(c.version, c.actor, c.action, c.rolled_back) for c in rollouts.history.defaults(MODEL)]
    assert changes == [("1.0", "before the history", "adopted", True), ("2.0", "ana", "promote", True),
                       ("3.0", "ana", "promote", True), ("2.0", "ben", "rollback", True),
                       ("1.0", "ben", "rollback", True), ("3.0", "ana", "rollback", False)]
    assert registry.route(MODEL).default == "3.0"


async def test_a_rollback_names_only_an_earlier_default(plane):
    rollouts, _, _, _ = plane
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=10)
    for version, status, code in (("2.0", 404, "not_an_earlier_default"), ("1.0", 409, "is_default")):
        with pytest.raises(ServiceError) as refused:
            await rollouts.rollback(MODEL, version)
        assert (refused.value.status, refused.value.code) == (status, code)


async def test_rollback_without_an_earlier_default_is_a_conflict(plane):
    rollouts, _, _, _ = plane
    with pytest.raises(ServiceError) as refused:
        await rollouts.rollback(MODEL)
    assert (refused.value.status, refused.value.code) == (409, "no_previous_version")


async def test_retire_drops_a_canary_and_never_the_default(plane):
    rollouts, registry, admin, _ = plane
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar", canary_percent=30)
    with pytest.raises(ServiceError) as refused:
        await rollouts.retire(MODEL, "1.0")
    assert (refused.value.status, refused.value.code) == (409, "is_default")
    assert await rollouts.retire(MODEL, "2.0") == {"model": MODEL, "retired": "2.0"}
    assert registry.route(MODEL) == Route(default="1.0") and "2.0" not in admin.live


async def test_promote_with_nothing_to_promote_is_a_conflict(plane):
    rollouts, _, _, _ = plane
    with pytest.raises(ServiceError) as refused:
        await rollouts.promote(MODEL)
    assert (refused.value.status, refused.value.code) == (409, "nothing_to_promote")


async def test_only_an_archive_nothing_needs_is_removed_from_the_store(plane, tmp_path):
    rollouts, _, _, gate = plane
    gate.refuse.add("3.0")
    with pytest.raises(ServiceError):
        await rollouts.deploy(MODEL, f"{MODEL}-v3.0.mar")
    await rollouts.deploy(MODEL, f"{MODEL}-v2.0.mar")
    await rollouts.promote(MODEL, "2.0")
    for archive, code in ((f"{MODEL}-v2.0.mar", "archive_deployed"), (f"{MODEL}-v1.0.mar", "archive_in_history")):
        with pytest.raises(ServiceError) as refused:
            await rollouts.remove_archive(MODEL, archive)
        assert (refused.value.status, refused.value.code) == (409, code) and (tmp_path / archive).is_file()
    assert await rollouts.remove_archive(MODEL, f"{MODEL}-v3.0.mar") == {
        "model": MODEL, "removed": f"{MODEL}-v3.0.mar", "version": "3.0"}
    assert not (tmp_path / f"{MODEL}-v3.0.mar").exists()
