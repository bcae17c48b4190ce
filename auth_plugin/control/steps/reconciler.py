"""Keep TorchServe serving what the routing table says, after a restart of either: register what is missing,
set the default, unregister what is not in the table (such as what load_models registered at TorchServe's start)
once no request is in flight on it. On the very first run, with an empty table, TorchServe's state is adopted
instead. On a shared database every pod runs one for its own TorchServe: that is how a version deployed through
one pod reaches the others (control/pods.py)."""

from __future__ import annotations

import asyncio
import logging

from auth_plugin.control.actual.torchserve_admin import ManagementError, TorchServeAdmin, VersionState
from auth_plugin.control.archive_catalogue import ArchiveCatalogue
from auth_plugin.control.desired.versions import Route, VersionRegistry
from auth_plugin.control.history import History
from auth_plugin.control.smoke_gate import GateRefused, SmokeGate
from auth_plugin.control.steps.rollout import RolloutSettings
from auth_plugin.torchserve_keys import KeysUnavailable
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin.control.steps.reconciler")


class Reconciler:
    def __init__(self, admin: TorchServeAdmin, registry: VersionRegistry, history: History,
                 settings: RolloutSettings, lock: asyncio.Lock, gate: SmokeGate | None = None) -> None:
        self._admin = admin
        self._registry = registry
        self._history = history
        self._settings = settings
        self._catalogue = ArchiveCatalogue(settings.model_store)
        self._lock = lock  # the rollouts' own: a reconcile never runs in the middle of a transition
        self._gate = gate  # each version it registers is gated on this TorchServe before it counts as live
        self._refused: set[tuple[str, str]] = set()  # (version, archive) this pod's gate refused: not retried here

    async def reconcile(self, model: str) -> None:
        async with self._lock:
            live = {state.version: state for state in await self._admin.versions(model)}
            route = self._registry.route(model)
            if route is None:
                default = next((state for state in live.values() if state.is_default), None)
                if default is not None:
                    self._registry.add_version(model, default.version, default.archive)
                    self._registry.set_route(model, Route(default=default.version))
                    self._history.record_default(model, default.version, default.archive, "reconciler", "adopted")
                return
            for version, archive in self._registry.versions(model).items():
                if version in live or (version, archive) in self._refused:
                    continue
                if not self._catalogue.exists(archive):
                    route = self._forget_lost_version(model, route, version, archive, live)
                    continue
                log.info("restoring %s %s from %s", model, version, archive)
                with self._registry.pending(model, version):
                    await self._admin.register(model, version, archive, self._settings.workers,
                                               self._settings.register_timeout_s)
                    await self._gate_here(model, version, archive)
            wanted = self._registry.versions(model)
            live = {state.version: state for state in await self._admin.versions(model)}
            self._registry.observe_live(model, {version: state.workers for version, state in live.items()})
            if route.default in live and not live[route.default].is_default:
                await self._admin.set_default(model, route.default)
            for version in live:
                if version in wanted:
                    continue
                if self._registry.in_flight_count(model, version):  # drained first: the next round tries again
                    log.info("%s %s is gone from the routing table; unregistering it once its requests in flight "
                             "are answered", model, version)
                    continue
                log.info("unregistering %s %s: not in the routing table", model, version)
                await self._admin.unregister(model, version)

    async def _gate_here(self, model: str, version: str, archive: str) -> None:
        """This TorchServe's copy must answer the gate's sets (no comparison: the driver compared the version when
        it was deployed): a pod whose copy cannot serve it unloads it, and never reports it loaded."""
        if self._gate is None:
            return
        try:
            await self._gate.check(model, version)
        except GateRefused as exc:
            log.error("%s %s refused by this pod's smoke gate, unloaded here and not retried by this gateway: %s",
                      model, version, exc)
            self._refused.add((version, archive))
            await self._admin.unregister(model, version)

    async def forever(self, model: str, interval_s: float) -> None:
        """Reconcile every `interval_s`; a failed round (TorchServe down, no key yet) is retried, never fatal."""
        while True:
            try:
                await self.reconcile(model)
            except (ManagementError, KeysUnavailable, ServiceError) as exc:
                log.warning("reconcile did not complete (will retry): %s", exc)
            await asyncio.sleep(interval_s)

    def _forget_lost_version(self, model: str, route: Route, version: str, archive: str,
                             live: dict[str, VersionState]) -> Route:
        """An archive deleted from the model store cannot be restored: serve what TorchServe has, loudly."""
        log.error("%s %s cannot be restored: %s is gone from the model store; dropping it from the routing table",
                  model, version, archive)
        self._registry.remove_version(model, version)
        if route.canary == version:
            route = route.with_canary(None, 0)
        if route.default == version:
            fallback = next((state for state in live.values() if state.is_default), None)
            if fallback is None:
                return route
            log.error("%s now routes to TorchServe's default %s", model, fallback.version)
            self._registry.add_version(model, fallback.version, fallback.archive)
            self._history.record_default(model, fallback.version, fallback.archive, "reconciler", "restored")
            route = Route(default=fallback.version)
        self._registry.set_route(model, route)
        return route
