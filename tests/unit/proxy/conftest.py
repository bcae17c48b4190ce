"""The proxy app in-process against a fake TorchServe (an aiohttp app), with a token store in tmp_path."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from auth_plugin.app import create_app
from auth_plugin.database import Database
from auth_plugin.migrations import open_database, open_sqlite
from auth_plugin.settings import ProxySettings
from auth_plugin.token_store import TokenStore


class FakeTorchServe:
    """Just enough of TorchServe: key-checked predictions and model descriptions, a token API that renews the key
    of the type it is asked for (`renewed` lists them).

    Like TorchServe, the key it checks lives in memory and the file follows: `renew(..., file_lag_s=...)` leaves
    the file as it was ("old") or empty ("truncated") for a while, as TorchServe's in-place rewrite can.
    """

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self.seen: list[dict[str, str]] = []
        self.described = 0  # management calls describing the model (what /readyz asks)
        self.queries: list[str] = []  # each prediction's query string, as TorchServe got it
        self.started_at: list[float] = []  # loop time each accepted prediction's headers arrived
        self.bodies: list[int] = []  # the length of each body read whole
        self.delay_s = 0.0
        self.confidence = 0.97  # what every answer says of itself
        self.verdicts: dict[str, tuple[int, bool]] = {}  # version -> (model_degree, trusted) it always answers
        self.extra_headers: dict[str, str] = {}  # more headers on every answer (X-Archive-Trusted, ...)
        self.key = ""
        self.management = ""
        self.renewed: list[str] = []
        self.renew("infer001")

    def renew(self, key: str, expires_in_s: float = 3600, file_lag_s: float = 0.0, meanwhile: str = "old",
              management: str = "mgmt0001", management_expires_in_s: float | None = None) -> None:
        """New keys in memory at once, in the file after `file_lag_s`; each kind expires after its own life."""
        def stamp(seconds: float) -> str:
            return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"

        management_life = expires_in_s if management_expires_in_s is None else management_expires_in_s
        self.key, self.management = key, management
        document = json.dumps({"management": {"key": management, "expiration time": stamp(management_life)},
                               "inference": {"key": key, "expiration time": stamp(expires_in_s)},
                               "API": {"key": "api00001"}})
        if not file_lag_s:
            self.key_file.write_text(document)
            return
        if meanwhile == "truncated":
            self.key_file.write_text("")
        asyncio.get_running_loop().call_later(file_lag_s, self.key_file.write_text, document)

    def written_an_hour_ago(self) -> None:
        """The key file as TorchServe wrote it an hour ago: the keys' life is an hour, not what is left of it."""
        an_hour_ago = time.time() - 3600
        os.utime(self.key_file, (an_hour_ago, an_hour_ago))

    def life_left(self, kind: str) -> float:
        stamp = json.loads(self.key_file.read_text())[kind]["expiration time"]
        return datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC).timestamp() - time.time()

    async def predict(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            return web.json_response({"code": 400, "type": "InvalidKeyException"}, status=400)
        self.seen.append(dict(request.headers))
        self.queries.append(request.query_string)
        self.started_at.append(asyncio.get_running_loop().time())
        await asyncio.sleep(self.delay_s)
        body = await request.read()
        self.bodies.append(len(body))
        degree, trusted = self.verdicts.get(request.match_info.get("version", ""), (90, self.confidence >= 0.9))
        return web.json_response({"model_degree": degree, "bytes": len(body), "model_version": "1.0",
                                  "confidence": self.confidence, "trusted": trusted},
                                 headers={"Connection": "keep-alive", "X-Custom": "kept", **self.extra_headers})

    async def token(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer api00001":
            return web.json_response({}, status=400)
        kind = request.query.get("type", "")
        if kind not in ("inference", "management"):
            return web.json_response({}, status=400)
        self.renewed.append(kind)
        number = f"{self.renewed.count(kind) + 1:03d}"  # infer002, infer003, ...; mgmt0002, ...
        if kind == "inference":  # the other key keeps its own life
            self.renew(f"infer{number}", management=self.management,
                       management_expires_in_s=self.life_left("management"))
        else:
            self.renew(self.key, expires_in_s=self.life_left("inference"), management=f"mgmt0{number}",
                       management_expires_in_s=3600)
        return web.json_response({})

    async def models(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.management}":
            return web.json_response({"code": 400, "type": "InvalidKeyException"}, status=400)
        self.described += 1
        return web.json_response([{"workers": [{"status": "READY"}]}])

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/predictions/{model}", self.predict)
        app.router.add_post("/predictions/{model}/{version}", self.predict)
        app.router.add_post("/token", self.token)
        app.router.add_get("/models/{model}", self.models)
        return app


@pytest.fixture
async def setup(tmp_path, aiohttp_server, aiohttp_client):
    fake = FakeTorchServe(tmp_path / "key_file.json")
    upstream = await aiohttp_server(fake.app())
    store = TokenStore(tmp_path / "tokens.sqlite3")
    token, _ = store.issue("alice", ["predict"], 3600)

    async def client(**overrides):
        settings = ProxySettings(inference_url=str(upstream.make_url("")), management_url=str(upstream.make_url("")),
                                 torchserve_key_file=fake.key_file, token_db=tmp_path / "tokens.sqlite3",
                                 **{"datasets_dir": tmp_path / "datasets", **overrides})
        return await aiohttp_client(create_app(settings))

    yield fake, client, {"Authorization": f"Bearer {token}"}
    store.close()




@pytest.fixture
def admin_auth(tmp_path) -> dict[str, str]:
    store = TokenStore(tmp_path / "tokens.sqlite3")
    token, _ = store.issue("root", ["admin", "predict"], 3600)
    store.close()
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def open_db(request, tmp_path) -> Callable[[], Database]:
    """Opens a new connection (migrated) to this test's own empty database: a SQLite file, or a database on the
    session's real PostgreSQL. The stores' tests take it, so they run against both backends."""
    if request.param == "sqlite":
        return lambda: open_sqlite(tmp_path / "db.sqlite3")
    settings = ProxySettings(database_url=request.getfixturevalue("postgres").database())
    return lambda: open_database(settings)
