"""The reconciler against a stand-in for TorchServe's management API (the real one is in tests/integration)."""

from __future__ import annotations

import asyncio

from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.control.history import History
from auth_plugin.control.steps.reconciler import Reconciler
from auth_plugin.control.steps.rollout import RolloutSettings
from tests.unit.proxy.fakes import FakeAdmin


def rollouts(tmp_path, admin: FakeAdmin) -> tuple[Reconciler, VersionRegistry]:
    registry = VersionRegistry(tmp_path / "db.sqlite3")
    history = History(tmp_path / "db.sqlite3")
    return Reconciler(admin, registry, history, RolloutSettings(model_store=tmp_path), asyncio.Lock()), registry


async def test_first_run_adopts_torchserves_default(tmp_path):
    admin = FakeAdmin({"1.0": "m.mar"}, "1.0")
    control, registry = rollouts(tmp_path, admin)
    await control.reconcile("m")
    assert registry.route("m") == Route(default="1.0") and registry.versions("m") == {"1.0": "m.mar"}
    assert admin.calls == []
    assert [(c.version, c.actor, c.action) for c in History(tmp_path / "db.sqlite3").defaults("m")] == [
        ("1.0", "reconciler", "adopted")]


async def test_after_a_torchserve_restart_the_table_wins(tmp_path):
    (tmp_path / "m-v2.0.mar").write_bytes(b"archive")
    admin = FakeAdmin({"1.0": "m.mar"}, "1.0")  # load_models brought back 1.0 only
    control, registry = rollouts(tmp_path, admin)
    registry.add_version("m", "2.0", "m-v2.0.mar")
    registry.set_route("m", Route(default="2.0", previous="1.0", previous_archive="m.mar"))
    await control.reconcile("m")
    assert admin.calls == [("register", "m-v2.0.mar"), ("set_default", "2.0"), ("unregister", "1.0")]


async def test_a_deleted_archive_falls_back_to_what_torchserve_serves(tmp_path):
    admin = FakeAdmin({"1.0": "m.mar"}, "1.0")
    control, registry = rollouts(tmp_path, admin)
    registry.add_version("m", "2.0", "m-v2.0.mar")  # its archive is not in the model store any more
    registry.set_route("m", Route(default="2.0"))
    await control.reconcile("m")
    assert registry.route("m").default == "1.0" and registry.versions("m") == {"1.0": "m.mar"}
    assert admin.calls == []
