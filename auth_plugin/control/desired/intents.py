"""What a rollout driver is in the middle of, written down so that another one can finish it.

A driver records its transition (deploy, promote, rollback, retire) before it changes anything and clears it when
done, refused or failed. Only a driver that died mid-way (kill -9, a lost node) leaves one behind; the next holder
of the driver's lock (pods.DriverLock: free again once the dead driver's connection is gone) finds it and ends it
safely (end_abandoned): a half-deployed version that never took traffic is taken out again; a promotion or
rollback whose default had switched gets its old default drained and removed; a retirement whose traffic had moved
is finished; a canary whose automatic analysis died with its gateway is rolled back (the analysis's signals were
that gateway's); anything that had not changed the table yet is simply dropped. An analysis spans several
transitions, so its record is not the driver's lock's: it counts as abandoned once its gateway stops reporting (or,
on one machine, once the gateway runs no analysis of it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from auth_plugin.control.desired.versions import Route
from auth_plugin.database import Database


@dataclass(frozen=True)
class Intent:
    model: str
    action: str  # deploy | promote | rollback | retire | analyse (an automatic canary analysis, across steps)
    version: str  # the version the action is about
    previous: str | None  # the default when it began
    pod: str  # the driver
    started_at: float


class RolloutIntents:
    def __init__(self, database: Database, pod: str) -> None:
        self._db = database
        self.pod = pod

    def begin(self, model: str, action: str, version: str, previous: str | None) -> None:
        self._db.run("INSERT INTO rollout_intents VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET "
                     "action = excluded.action, version = excluded.version, previous = excluded.previous, "
                     "pod = excluded.pod, started_at = excluded.started_at",
                     (model, action, version, previous, self.pod, time.time()))

    def end(self, model: str) -> None:
        self._db.run("DELETE FROM rollout_intents WHERE model = ?", (model,))

    def pending(self, model: str) -> Intent | None:
        row = self._db.row("SELECT model, action, version, previous, pod, started_at FROM rollout_intents "
                           "WHERE model = ?", (model,))
        return Intent(*row) if row else None

    def close(self) -> None:
        self._db.close()


class Cleanup(Protocol):
    """What ending a transition takes (Rollouts has them)."""

    async def take_out(self, model: str, version: str) -> None: ...

    async def drain_and_remove(self, model: str, version: str) -> None: ...


async def end_abandoned(cleanup: Cleanup, intent: Intent, route: Route, versions: dict[str, str]) -> str:
    """End what a dead driver left: whatever it had already changed is finished, or undone where finishing would
    need a judgement it took with it (a canary under analysis is rolled back). Returns what was done."""
    model, version = intent.model, intent.version
    untouched = version in versions and version not in (route.default, route.canary)
    if intent.action == "deploy" and untouched:  # in the table, never given traffic
        await cleanup.take_out(model, version)
        return f"{version} taken out again (it never took traffic)"
    if intent.action in ("promote", "rollback") and route.default == version and intent.previous in versions \
            and intent.previous != version:
        await cleanup.drain_and_remove(model, intent.previous)
        return f"{intent.previous} drained and removed ({version} was the default already)"
    if intent.action == "retire" and untouched:
        await cleanup.drain_and_remove(model, version)
        return f"{version} drained and removed"
    if intent.action == "analyse" and route.canary == version:
        await cleanup.drain_and_remove(model, version)
        return f"the canary {version} rolled back (its analysis stopped with its gateway)"
    return "nothing had changed yet"
