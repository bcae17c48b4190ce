"""Version changes that lose no request: register -> smoke gate -> canary -> promote -> drain -> unregister.

TorchServe registers versions and switches its default, but it does not drain (unregistering kills workers with
requests in flight, pytorch/serve#1101) and has no canary split. The proxy routes every prediction to an
explicit version, so it knows what is in flight where, and only unregisters a version nothing is using.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auth_plugin.control.actual.pods import DriverLock, PodReports
from auth_plugin.control.actual.torchserve_admin import ManagementError, TorchServeAdmin, VersionState
from auth_plugin.control.archive_catalogue import ArchiveCatalogue
from auth_plugin.control.desired.intents import RolloutIntents
from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.control.history import DefaultChange, History
from auth_plugin.control.smoke_gate import GateRefused, SmokeGate
from auth_plugin.control.steps.recovery import Recovery
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin.control.steps.rollout")


class RolloutError(ServiceError):
    """A refused control-plane call: `status` (400/404/409/422/502) and a code naming why."""


@dataclass(frozen=True)
class RolloutSettings:
    model_store: Path
    workers: int = 2
    register_timeout_s: float = 180.0
    drain_timeout_s: float = 60.0
    # On a shared database other gateways route by the table too: before an old version is drained and unregistered,
    # wait for them to reread it (PROXY_STATE_REFRESH_S) and to finish what they sent just before.
    other_gateways_grace_s: float = 0.0


class Rollouts(Recovery):
    """The state machine of versions: each call is one transition, under `lock` (shared with the reconciler:
    one change at a time)."""

    def __init__(self, admin: TorchServeAdmin, registry: VersionRegistry, gate: SmokeGate,
                 settings: RolloutSettings, history: History, lock: asyncio.Lock | None = None,
                 pods: PodReports | None = None, driver: DriverLock | None = None,
                 intents: RolloutIntents | None = None) -> None:
        self._admin = admin
        self._registry = registry
        self.history = history
        self._gate = gate
        self._settings = settings
        self.catalogue = ArchiveCatalogue(settings.model_store)
        self.lock = lock or asyncio.Lock()
        self._pods = pods or PodReports(None, "", 0)
        self._driver = driver or DriverLock(None)
        self._intents = intents
        self._recorded = False  # whether the transition under way recorded an intent (only it clears one)
        self.analysing: set[str] = set()  # models whose automatic canary analysis runs in this process

    @property
    def gate(self) -> SmokeGate:
        return self._gate

    @asynccontextmanager
    async def _transition(self, model: str) -> AsyncIterator[None]:
        """One change at a time: in this process (shared with the reconciler), and across the pods of a shared
        database (the driver's lock). A transition a dead driver left half done is ended first; what this one
        records of itself (_intend) is cleared when it ends, however it ends."""
        async with self.lock, self._driver.held(model):
            await asyncio.to_thread(self._registry.reload, model)  # as the last driver left it, not as cached
            await self._finish_abandoned(model)
            self._recorded = False
            try:
                yield
            finally:
                if self._recorded:
                    self._intents.end(model)

    def _intend(self, model: str, action: str, version: str, previous: str | None) -> None:
        if self._intents is not None:
            self._intents.begin(model, action, version, previous)
            self._recorded = True

    async def _loaded_everywhere(self, model: str, version: str) -> None:
        """Wait until every live pod has `version` loaded (at once on one machine); a 504 naming the pods that did
        not within the register timeout."""
        waiting = await self._pods.wait_for(model, lambda report: report.workers(version) > 0,
                                            self._settings.register_timeout_s)
        if waiting:
            raise RolloutError(504, "pods_not_ready", f"{model} {version} is not loaded on every pod after "
                               f"{self._settings.register_timeout_s:g} s (still waiting: {', '.join(waiting)}); "
                               "nothing was routed to it: try again once they report it")

    async def _torchserve(self, call: Any, *args: Any) -> Any:
        try:
            return await call(*args)
        except ManagementError as exc:
            status = 502 if exc.status in (0, 500) else exc.status
            raise RolloutError(status, "torchserve_refused", exc.message) from exc

    async def live_versions(self, model: str) -> list[VersionState]:
        """What TorchServe has registered of `model` (workers, default), TorchServe's refusals as ours."""
        return await self._torchserve(self._admin.versions, model)

    def _route(self, model: str) -> Route:
        route = self._registry.route(model)
        if route is None:
            raise RolloutError(404, "unknown_model", f"no versions of {model} are deployed")
        return route

    def _known(self, model: str, version: str) -> str:
        archive = self._registry.versions(model).get(version)
        if archive is None:
            raise RolloutError(404, "unknown_version", f"{model} has no deployed version {version}")
        return archive

    async def _register_and_gate(self, model: str, version: str, archive: str, held_out: Sequence[Path] = (),
                                 baseline: str | None = None) -> dict[str, float]:
        """Register and wait for its workers, then the smoke gate (against `baseline`, the current default,
        when given); a refused version is unregistered."""
        try:
            await self._admin.register(model, version, archive, self._settings.workers,
                                       self._settings.register_timeout_s)
        except ManagementError as exc:
            if exc.status != 500:  # 409 already registered, 404 not found, ...: TorchServe's own answer
                raise RolloutError(502 if exc.status == 0 else exc.status, "torchserve_refused", exc.message) from exc
            await self._unregister_quietly(model, version)  # wrong weights, a handler that raises at load, ...
            raise RolloutError(422, "gate_refused", f"version {version} refused: its workers did not start "
                               f"({exc.message}); TorchServe's model_log.log has the handler's error") from exc
        try:
            return await self._gate.check(model, version, held_out, baseline)
        except GateRefused as exc:
            log.warning("smoke gate refused %s %s: %s", model, version, exc)
            await self._unregister_quietly(model, version)
            raise RolloutError(422, "gate_refused", f"version {version} refused by the smoke gate: {exc}") from exc

    async def _unregister_quietly(self, model: str, version: str) -> None:
        try:
            await self._admin.unregister(model, version)
        except ManagementError as exc:
            if exc.status != 404:  # 404: TorchServe already dropped it
                log.exception("could not unregister refused version %s %s", model, version)

    async def deploy(self, model: str, archive: str, canary_percent: float = 0.0,
                     held_out: Sequence[Path] = ()) -> dict[str, Any]:
        """Register, gate (on `held_out` photos too, when given), then route `canary_percent` of traffic to it."""
        if not 0 <= canary_percent <= 100:
            raise RolloutError(400, "bad_canary", "canary must be a percentage between 0 and 100")
        info = await self.catalogue.read(archive)
        if info.model != model:
            raise RolloutError(400, "wrong_model", f"{archive} holds model {info.model!r}, not {model!r}")
        version = info.version
        try:
            recorded = self._gate.check_recorded(info)
        except GateRefused as exc:
            raise RolloutError(422, "gate_refused", f"version {version} refused by the smoke gate: {exc}") from exc
        async with self._transition(model):
            route = self._route(model)
            live = {state.version for state in await self._torchserve(self._admin.versions, model)}
            if version in self._registry.versions(model) or version in live:
                raise RolloutError(409, "version_exists", f"{model} {version} is already deployed")
            self._intend(model, "deploy", version, route.default)
            accuracy = recorded | await self._register_and_gate(model, version, archive, held_out,
                                                                 baseline=route.default)
            self._registry.mark_live(model, version)
            self._registry.add_version(model, version, archive)  # the other pods load it now
            if canary_percent > 0:
                await self._loaded_everywhere(model, version)
                self._registry.set_route(model, route.with_canary(version, canary_percent))
        log.info("deployed %s %s from %s (%s, canary %s%%)", model, version, archive, accuracy, canary_percent)
        return {"model": model, "version": version, **accuracy, "canary_percent": canary_percent}

    async def set_canary(self, model: str, version: str, percent: float) -> dict[str, Any]:
        if not 0 <= percent <= 100:
            raise RolloutError(400, "bad_canary", "canary must be a percentage between 0 and 100")
        async with self._transition(model):
            route = self._route(model)
            self._known(model, version)
            if version == route.default:
                raise RolloutError(409, "is_default", f"{version} is the default; a canary is another version")
            if percent > 0:
                await self._loaded_everywhere(model, version)
            self._registry.set_route(model, route.with_canary(version, percent))
        return {"model": model, "canary": version if percent else None, "canary_percent": percent}

    async def promote(self, model: str, version: str | None = None, actor: str = "admin") -> dict[str, Any]:
        async with self._transition(model):
            route = self._route(model)
            version = version or route.canary
            if version is None:
                raise RolloutError(409, "nothing_to_promote", "no version given and no canary set")
            archive = self._known(model, version)
            if version == route.default:
                raise RolloutError(409, "is_default", f"{version} is already the default")
            self._intend(model, "promote", version, route.default)
            self._start_history(model, route)
            await self._loaded_everywhere(model, version)
            await self._switch(model, route, version)
            self.history.record_default(model, version, archive, actor, "promote")
        return {"model": model, "default": version, "retired": route.default}

    async def rollback(self, model: str, version: str | None = None, actor: str = "admin") -> dict[str, Any]:
        """Make `version`, an earlier default, the default again; by default the one before the current default
        (the default history's, so that rolling back twice steps back twice instead of toggling)."""
        async with self._transition(model):
            route = self._route(model)
            self._start_history(model, route)
            target = self.history.rollback_to(model, route, version)
            previous, archive = target.version, target.archive
            self._intend(model, "rollback", previous, route.default)
            if previous not in self._registry.versions(model):
                live = {state.version for state in await self._torchserve(self._admin.versions, model)}
                if previous not in live:
                    await self.catalogue.read(archive)  # still there, still an archive
                    await self._register_and_gate(model, previous, archive)
                self._registry.mark_live(model, previous)
                self._registry.add_version(model, previous, archive)
            await self._loaded_everywhere(model, previous)
            await self._switch(model, route, previous)
            self.history.mark_rolled_back(model, route.default)
            self.history.record_default(model, previous, archive, actor, "rollback")
        return {"model": model, "default": previous, "retired": route.default}

    def rollback_target(self, model: str) -> DefaultChange | None:
        """Where a rollback without a version would go now (the admin page names it on its button)."""
        route = self._registry.route(model)
        if route is None:
            return None
        self._start_history(model, route)
        return self.history.rollback_target(model, route.default)

    def _start_history(self, model: str, route: Route) -> None:
        self.history.start(model, route, self._registry.versions(model))

    async def retire(self, model: str, version: str) -> dict[str, Any]:
        async with self._transition(model):
            route = self._route(model)
            self._known(model, version)
            if version == route.default:
                raise RolloutError(409, "is_default", f"{version} is the default: promote another version first")
            self._intend(model, "retire", version, route.default)
            await self.drain_and_remove(model, version)
        return {"model": model, "retired": version}

    async def remove_archive(self, model: str, archive: str) -> dict[str, Any]:
        """Delete an archive nothing needs from the model store (a refused candidate, an old build): never one that
        is deployed, nor an earlier default's, which a rollback may re-register."""
        info = await self.catalogue.read(archive)
        if info.model != model:
            raise RolloutError(400, "wrong_model", f"{archive} holds model {info.model!r}, not {model!r}")
        async with self._transition(model):
            if archive in self._registry.versions(model).values():
                raise RolloutError(409, "archive_deployed", f"{archive} is deployed ({model} {info.version}): "
                                   "retire that version first")
            if any(change.archive == archive for change in self.history.defaults(model)):
                raise RolloutError(409, "archive_in_history", f"{archive} was a default ({info.version}): a "
                                   "rollback may need it, so it stays")
            await asyncio.to_thread((self.catalogue.model_store / archive).unlink)
        log.info("removed %s (%s %s) from the model store", archive, model, info.version)
        return {"model": model, "removed": archive, "version": info.version}

    async def _switch(self, model: str, route: Route, version: str) -> None:
        """Make `version` the default (TorchServe and routing), then drain and unregister the old default."""
        old = route.default
        await self._torchserve(self._admin.set_default, model, version)
        self._registry.set_route(model, Route(default=version, previous=old,
                                              previous_archive=self._registry.versions(model).get(old)))
        await self._drain_and_unregister(model, old)

    async def _drain_and_unregister(self, model: str, version: str) -> None:
        """Leave the table once nothing is in flight on `version`: here, and on every live pod (each reporting after
        the other gateways have reread the route), then leave this TorchServe; the other pods' reconcilers unload
        it when they see it gone from the table."""
        await asyncio.sleep(self._settings.other_gateways_grace_s)
        deadline = time.monotonic() + self._settings.drain_timeout_s
        busy = await self._pods.wait_for(model, lambda report: report.in_flight(version) == 0,
                                         self._settings.drain_timeout_s, since=time.time())
        while self._registry.in_flight_count(model, version) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if busy or self._registry.in_flight_count(model, version) > 0:
            log.warning("%s %s still had requests in flight after %ss (pods: %s)", model, version,
                        self._settings.drain_timeout_s, ", ".join(busy) or "this one")
        self._registry.remove_version(model, version)
        await self._unregister_quietly(model, version)  # out of the table already: the reconciler retries
