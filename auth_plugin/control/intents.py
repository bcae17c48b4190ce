"""What a rollout driver is in the middle of, written down so that another one can finish it.

A driver records its transition (deploy, promote, rollback, retire) before it changes anything and clears it when
done, refused or failed. Only a driver that died mid-way (kill -9, a lost node) leaves one behind; the next holder
of the driver's lock (pods.DriverLock: free again once the dead driver's connection is gone) finds it and ends it
safely (Rollouts.recover): a half-deployed version that never took traffic is taken out again; a promotion or
rollback whose default had switched gets its old default drained and removed; a retirement whose traffic had moved
is finished; anything that had not changed the table yet is simply dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from auth_plugin.database import Database


@dataclass(frozen=True)
class Intent:
    model: str
    action: str  # deploy | promote | rollback | retire
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
