"""The part of Rollouts that ends what a dead driver left half done (intents.py), and keeps an automatic canary
analysis on record across its steps so that its canary is rolled back if its gateway dies."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager

from auth_plugin.control.actual.pods import PodReports
from auth_plugin.control.desired.intents import Intent, RolloutIntents, end_abandoned
from auth_plugin.control.desired.versions import VersionRegistry
from auth_plugin.control.history import History
from auth_plugin.database import UNAVAILABLE
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin.control.steps.rollout")


class Recovery:
    """Mixed into Rollouts, whose state it uses."""

    _intents: RolloutIntents | None
    _registry: VersionRegistry
    _pods: PodReports
    history: History
    analysing: set[str]  # models whose automatic canary analysis runs in this process

    def _transition(self, model: str) -> AbstractAsyncContextManager[None]: ...

    async def _unregister_quietly(self, model: str, version: str) -> None: ...

    async def _drain_and_unregister(self, model: str, version: str) -> None: ...

    async def recover_forever(self, model: str, every_s: float) -> None:
        """Every `every_s`: a transition left half done by a driver that died is ended (intents.py), unless a
        live driver holds the lock (it is still at work)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                if self._intents is not None and await asyncio.to_thread(self._intents.pending, model):
                    async with self._transition(model):
                        pass
            except (ServiceError, *UNAVAILABLE) as exc:  # busy (a live driver) or unreachable: the next round
                log.info("no recovery of %s this round: %s", model, exc)

    async def _finish_abandoned(self, model: str) -> None:
        intent = None if self._intents is None else self._intents.pending(model)
        route = self._registry.route(model)
        if intent is None or route is None or (intent.action == "analyse" and self._analysis_alive(intent)):
            return
        outcome = await end_abandoned(self, intent, route, self._registry.versions(model))
        self._intents.end(model)
        log.warning("%s %s of %s by %s was left half done; ended it: %s", model, intent.action, intent.version,
                    intent.pod, outcome)
        self.history.audit(f"{self._intents.pod} (took over from {intent.pod})", f"recover {intent.action}", model,
                           {"version": intent.version, "previous": intent.previous}, outcome)

    def _analysis_alive(self, intent: Intent) -> bool:
        if intent.pod == self._intents.pod:
            return intent.model in self.analysing
        return intent.pod in {report.pod for report in self._pods.live(intent.model)}

    def analysis_started(self, model: str, version: str) -> None:
        """An automatic analysis spans transitions: recorded apart from them, so that another gateway rolls its
        canary back if this one dies mid-way (intents.py)."""
        self.analysing.add(model)
        route = self._registry.route(model)
        if self._intents is not None:
            self._intents.begin(model, "analyse", version, route.default if route else None)

    def analysis_ended(self, model: str) -> None:
        self.analysing.discard(model)
        intent = None if self._intents is None else self._intents.pending(model)
        if intent is not None and intent.action == "analyse" and intent.pod == self._intents.pod:
            self._intents.end(model)

    async def take_out(self, model: str, version: str) -> None:
        self._registry.remove_version(model, version)
        await self._unregister_quietly(model, version)

    async def drain_and_remove(self, model: str, version: str) -> None:
        """No more traffic for `version` (its canary share closed), then out of the table once drained."""
        route = self._registry.route(model)
        if route is not None and route.canary == version:
            self._registry.set_route(model, route.with_canary(None, 0))
        await self._drain_and_unregister(model, version)

