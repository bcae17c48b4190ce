"""Registration waits for the workers itself (TorchServe's `synchronous=true` stalls the inference connections that
share its netty thread): ready workers end the wait, a worker process that changed or vanished before it was ready
is a failed start, and the wait is bounded."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from auth_plugin.control.actual import torchserve_admin
from auth_plugin.control.actual.torchserve_admin import ManagementError, TorchServeAdmin
from auth_plugin.torchserve_keys import TorchServeKeys

KEYS = {"management": {"key": "mgmt0001", "expiration time": "2099-01-01T00:00:00.000Z"},
        "inference": {"key": "infer001", "expiration time": "2099-01-01T00:00:00.000Z"}, "API": {"key": "api00001"}}


def worker(status: str, pid: int) -> dict:
    return {"id": "9000", "status": status, "pid": pid}


async def registering(tmp_path: Path, states: list[dict], monkeypatch: pytest.MonkeyPatch,
                      timeout_s: float = 5.0, workers: int = 1, min_workers: int = 1) -> list[str]:
    """Register against a management API that describes the version as `states`, one per call (the last repeats);
    the query strings of the registration calls it received."""
    monkeypatch.setattr(torchserve_admin, "_POLL_S", 0.01)
    registered: list[str] = []

    async def register(request: web.Request) -> web.Response:
        registered.append(request.query_string)
        return web.json_response({"status": "Processing worker updates..."}, status=202)

    async def describe(request: web.Request) -> web.Response:
        state = states.pop(0) if len(states) > 1 else states[0]
        return web.json_response([{"modelVersion": "2.0", "minWorkers": min_workers, "workers": [state]}])

    app = web.Application()
    app.router.add_post("/models", register)
    app.router.add_get("/models/food_rotation/2.0", describe)
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps(KEYS))
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = str(server.make_url(""))
        admin = TorchServeAdmin(session, TorchServeKeys(key_file, url, 60), url)
        await admin.register("food_rotation", "2.0", "food_rotation-v2.0.mar", workers, timeout_s)
    return registered


async def test_registration_returns_once_the_workers_are_ready_and_never_asks_torchserve_to_wait(
        tmp_path, monkeypatch):
    states = [worker("UNLOADING", -1), worker("UNLOADING", 4242), worker("UNLOADING", 4242), worker("READY", 4242)]
    registered = await registering(tmp_path, states, monkeypatch)
    assert len(registered) == 1 and "synchronous=false" in registered[0] and "initial_workers=1" in registered[0]


@pytest.mark.parametrize("after", [-1, 4343], ids=["vanished", "restarted"])
async def test_a_worker_that_exits_while_loading_is_a_failed_start(tmp_path, monkeypatch, after):
    states = [worker("UNLOADING", -1), worker("UNLOADING", 4242), worker("UNLOADING", after)]
    with pytest.raises(ManagementError) as refused:
        await registering(tmp_path, states, monkeypatch)
    assert refused.value.status == 500 and "exited while loading" in refused.value.message


async def test_workers_that_never_get_ready_end_the_wait_at_the_timeout(tmp_path, monkeypatch):
    with pytest.raises(ManagementError) as refused:
        await registering(tmp_path, [worker("UNLOADING", 4242)], monkeypatch, timeout_s=0.2)
    assert refused.value.status == 500 and "not ready after" in refused.value.message


async def test_an_archive_that_asks_for_fewer_workers_is_ready_when_those_are(tmp_path, monkeypatch):
    """TorchServe starts what the archive's model-config says (a small-profile archive: one), whatever was asked."""
    registered = await registering(tmp_path, [worker("READY", 4242)], monkeypatch, timeout_s=1.0, workers=2)
    assert len(registered) == 1
