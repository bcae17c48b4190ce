"""TorchServe's management API on loopback, with TorchServe's management key: register, set-default, unregister."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from auth_plugin.torchserve_keys import KeysUnavailable, TorchServeKeys, send_with_key

_POLL_S = 0.5  # how often a registration asks whether its workers are up


class ManagementError(Exception):
    """TorchServe refused or failed a management call; `status` is its HTTP status (0: unreachable)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class VersionState:
    version: str
    archive: str
    workers: int  # READY workers
    is_default: bool


class TorchServeAdmin:
    def __init__(self, session: aiohttp.ClientSession, keys: TorchServeKeys, management_url: str) -> None:
        self._session = session
        self._keys = keys
        self._url = management_url.rstrip("/")

    async def _management_key(self, refused: str | None) -> str:
        return await self._keys.management(self._session, refused)

    async def _call(self, method: str, path: str, timeout_s: float = 10.0, **params: str) -> Any:
        try:
            answer = await send_with_key(self._session, method, self._url + path, self._management_key,
                                         params=params, timeout=aiohttp.ClientTimeout(total=timeout_s))
        except KeysUnavailable as exc:
            raise ManagementError(0, str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ManagementError(0, f"TorchServe's management API did not answer: {type(exc).__name__}") from exc
        if answer.key_refused:
            raise ManagementError(400, "TorchServe refused its own management key")
        text = answer.body.decode("utf-8", "replace")
        if answer.status >= 400:
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise ManagementError(answer.status, message)
        return json.loads(text) if text.strip() else {}

    @staticmethod
    def _path(model: str, *version: str | None, then: str = "") -> str:
        """/models/<model>[/<version>][<then>], every name quoted: a name is never a path or a query."""
        names = [model, *(v for v in version if v)]
        return "/models/" + "/".join(quote(name, safe="") for name in names) + then

    async def versions(self, model: str) -> list[VersionState]:
        """Every registered version of `model`; [] when the model is not registered at all."""
        try:
            described = await self._call("GET", self._path(model, then="/all"))
            default = (await self._call("GET", self._path(model)))[0]["modelVersion"]
        except ManagementError as exc:
            if exc.status == 404:
                return []
            raise
        return [VersionState(version=entry["modelVersion"], archive=entry["modelUrl"],
                             workers=sum(w.get("status") == "READY" for w in entry.get("workers", [])),
                             is_default=entry["modelVersion"] == default) for entry in described]

    async def live_workers(self, model: str, version: str | None, timeout_s: float) -> int:
        """READY workers of one version of `model` (TorchServe's default version when None)."""
        described = await self._call("GET", self._path(model, version), timeout_s)
        return sum(status == "READY" for _, _, status in _workers(described, model))

    async def register(self, model: str, version: str, archive: str, workers: int, timeout_s: float) -> None:
        """Register an archive of the model store and wait here until `workers` of its workers are READY (fewer
        when the archive's own model-config asks for fewer: TorchServe starts what it says, whatever was asked).

        TorchServe's own `synchronous=true` waits on the netty thread that took the call, and inference shares those
        threads: every prediction connection on it stalled for the whole worker start (35 s timeouts under load).
        So TorchServe is asked to start the workers in the background, and the proxy polls. TorchServe does not
        report a worker that failed to load (it restarts it, "UNLOADING" all along), but its process changes: a
        worker whose pid was seen and then changed or vanished before it was READY is a failed start."""
        await self._call("POST", "/models", url=archive, initial_workers=str(workers), synchronous="false")
        deadline = time.monotonic() + timeout_s
        pids: dict[str, int] = {}
        while True:
            described = await self._call("GET", self._path(model, version))
            started = _workers(described, f"{model} {version}")
            if sum(status == "READY" for _, _, status in started) >= min(workers, _min_workers(described, workers)):
                return
            for worker, pid, _ in started:
                if pids.get(worker, pid) != pid:
                    raise ManagementError(500, f"worker {worker} of {model} {version} exited while loading")
                if pid > 0:
                    pids[worker] = pid
            if time.monotonic() >= deadline:
                raise ManagementError(500, f"the workers of {model} {version} were not ready after {timeout_s:.0f} s")
            await asyncio.sleep(_POLL_S)

    async def set_default(self, model: str, version: str) -> None:
        await self._call("PUT", self._path(model, version, then="/set-default"))

    async def unregister(self, model: str, version: str) -> None:
        await self._call("DELETE", self._path(model, version), timeout_s=60.0)


def _workers(described: Any, what: str) -> list[tuple[str, int, str | None]]:
    """(id, pid, status) of every worker in TorchServe's description of one version, its shape checked here."""
    try:
        return [(str(w.get("id", i)), int(w.get("pid", -1)), w.get("status"))
                for i, w in enumerate(described[0]["workers"])]
    except (LookupError, TypeError, ValueError, AttributeError) as exc:
        raise ManagementError(0, f"TorchServe described {what} in an unexpected shape: {exc!r}") from exc


def _min_workers(described: Any, default: int) -> int:
    """The minWorkers TorchServe describes for a version (`default` when it says nothing usable)."""
    try:
        return max(1, int(described[0]["minWorkers"]))
    except (LookupError, TypeError, ValueError):
        return default
