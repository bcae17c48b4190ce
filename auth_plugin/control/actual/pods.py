"""Pods on one shared database: what each pod's TorchServe actually has, and one rollout driver at a time.

A pod is one gateway with its own TorchServe. On a shared database (PROXY_DATABASE_URL) every pod reconciles its
TorchServe to the shared routing table and reports, as its heartbeat, the versions it has loaded (live workers) and
the requests it has in flight on each. The gateway driving a rollout advances a step only when every live pod
reports it done: a version is routed traffic, or made the default, once every pod has loaded it, and an old
version leaves the table once no pod has requests in flight on it. A pod whose report is older than `live_after_s`
is not waited for (it died, or its sidecar did): when it comes back it reconciles to the table before it is ready.

On the embedded SQLite (one machine, one pod) there is nothing to wait for: the reports are not written, and the
waits return at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from auth_plugin.control.actual.torchserve_admin import ManagementError, TorchServeAdmin
from auth_plugin.control.desired.intents import RolloutIntents
from auth_plugin.control.desired.versions import VersionRegistry
from auth_plugin.database import UNAVAILABLE, AdvisoryLock, Database
from auth_plugin.migrations import open_database
from auth_plugin.settings import ProxySettings
from auth_plugin.torchserve_keys import KeysUnavailable
from food_rotation.service_error import ServiceError

log = logging.getLogger("auth_plugin.control.actual.pods")

_POLL_S = 0.1
_DRIVER_NAMESPACE = 0x66727364  # "frsd": the advisory locks of rollout drivers (migrations use another key)


@dataclass(frozen=True)
class PodReport:
    pod: str
    versions: dict[str, dict[str, int]]  # version -> {"workers": live workers, "in_flight": requests}
    reported_at: float

    def workers(self, version: str) -> int:
        return self.versions.get(version, {}).get("workers", 0)

    def in_flight(self, version: str) -> int:
        return self.versions.get(version, {}).get("in_flight", 0)

    def as_json(self, now: float) -> dict[str, object]:
        return {"pod": self.pod, "versions": self.versions, "age_s": round(now - self.reported_at, 3)}


class PodReports:
    """The pod_reports table: this pod writes its own row (`report`), the driver reads everyone's (`live`)."""

    def __init__(self, database: Database | None, pod: str, live_after_s: float) -> None:
        self._db = database  # None: one machine, nothing shared
        self.pod = pod
        self.live_after_s = live_after_s

    @property
    def shared(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def report(self, model: str, workers: dict[str, int], in_flight: dict[str, int]) -> None:
        if self._db is None:
            return
        versions = {version: {"workers": workers.get(version, 0), "in_flight": in_flight.get(version, 0)}
                    for version in sorted(set(workers) | set(in_flight))}
        self._db.run("INSERT INTO pod_reports VALUES (?, ?, ?, ?) ON CONFLICT (pod, model) DO UPDATE SET "
                     "versions = excluded.versions, reported_at = excluded.reported_at",
                     (self.pod, model, json.dumps(versions), time.time()))

    def withdraw(self, model: str) -> None:
        """A pod that stops cleanly is not waited for, not even until its report goes stale."""
        if self._db is not None:
            self._db.run("DELETE FROM pod_reports WHERE pod = ? AND model = ?", (self.pod, model))

    def live(self, model: str) -> list[PodReport]:
        """Every pod that reported within `live_after_s`."""
        if self._db is None:
            return []
        rows = self._db.rows("SELECT pod, versions, reported_at FROM pod_reports WHERE model = ? AND reported_at >= ? "
                             "ORDER BY pod", (model, time.time() - self.live_after_s))
        return [PodReport(pod, json.loads(versions), at) for pod, versions, at in rows]

    async def wait_for(self, model: str, done: Callable[[PodReport], bool], timeout_s: float,
                       since: float | None = None) -> list[str]:
        """Wait until every live pod's report satisfies `done`, and was made after `since` when given (a report
        older than a change cannot tell that the change is done); the pods that did not, at the timeout (empty: all
        did). An unreadable database is waited out like a pod that is not done yet."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                waiting = [report.pod for report in await asyncio.to_thread(self.live, model)
                           if (since is not None and report.reported_at < since) or not done(report)]
            except UNAVAILABLE as exc:
                log.warning("could not read the pods' reports: %s", exc)
                waiting = ["(database unavailable)"]
            if not waiting or time.monotonic() >= deadline:
                return waiting
            await asyncio.sleep(_POLL_S)


class DriverBusy(ServiceError):
    def __init__(self, model: str) -> None:
        super().__init__(409, "another_driver", f"another gateway is changing the versions of {model} right now; "
                                                "try again when its deploy, promotion or rollback is done")


class DriverLock:
    """One rollout driver at a time on a shared PostgreSQL: an advisory lock per model (database.AdvisoryLock),
    held for one transition. PostgreSQL drops it when the connection dies, so a driver that crashed mid-rollout is
    taken over by whichever gateway gets the next admin call. On SQLite there is one control plane already
    (plane_lock.py): nothing to take."""

    def __init__(self, locks: AdvisoryLock | None) -> None:
        self._locks = locks

    def close(self) -> None:
        if self._locks is not None:
            self._locks.close()

    @asynccontextmanager
    async def held(self, model: str, wait_s: float = 2.0) -> AsyncIterator[None]:
        if self._locks is None:
            yield
            return
        key = AdvisoryLock.key(_DRIVER_NAMESPACE, model)
        if not await asyncio.to_thread(self._locks.acquire, key, wait_s):
            raise DriverBusy(model)
        try:
            yield
        finally:
            try:
                await asyncio.to_thread(self._locks.release, key)
            except UNAVAILABLE as exc:  # the connection is gone, and the lock with it
                log.warning("could not release the rollout driver's lock: %s", exc)


async def heartbeat(reports: PodReports, admin: TorchServeAdmin, registry: VersionRegistry, model: str,
                    every_s: float) -> None:
    """Every `every_s`: ask this pod's TorchServe what it has live, route by it (registry.observe_live) and report
    it with the requests in flight; withdrawn when the gateway stops."""
    try:
        while True:
            try:
                workers = {state.version: state.workers for state in await admin.versions(model)}
                registry.observe_live(model, workers)
                await asyncio.to_thread(reports.report, model, workers, registry.in_flight_by_version(model))
            except (ManagementError, KeysUnavailable, *UNAVAILABLE) as exc:  # no report: stale, then not waited for
                log.warning("pod report not sent: %s", exc)
            await asyncio.sleep(every_s)
    finally:
        with contextlib.suppress(*UNAVAILABLE):
            await asyncio.to_thread(reports.withdraw, model)


def coordination(settings: ProxySettings) -> tuple[PodReports, DriverLock, RolloutIntents]:
    """This pod's reports, the driver's lock and the drivers' intents. On a shared database each has a
    connection of its own (a session lock must not share one with the routing table's rereads); on SQLite the
    reports and the lock do nothing, and the intents still let a restarted gateway end what a crash left half done."""
    pod = settings.pod_name or socket.gethostname()
    intents = RolloutIntents(open_database(settings), pod)
    if not settings.database_url:
        return PodReports(None, "", 0.0), DriverLock(None), intents
    return (PodReports(open_database(settings), pod, max(5.0, 5 * settings.state_refresh_s)),
            DriverLock(AdvisoryLock(open_database(settings))), intents)
