"""Which versions of a model are deployed, which one is the default and which takes a canary share.

Persisted in the gateway's database (its SQLite file, or a PostgreSQL several gateways share) so that a restart of
the proxy or of TorchServe restores the same routing; in-flight counts per version live in memory (they only matter
while this process forwards requests).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from auth_plugin.database import UNAVAILABLE, Database
from auth_plugin.migrations import open_sqlite

log = logging.getLogger("auth_plugin")


@dataclass(frozen=True)
class Route:
    default: str
    canary: str | None = None
    canary_percent: float = 0.0
    previous: str | None = None  # the default before the last promotion: what a rollback restores
    previous_archive: str | None = None

    def with_canary(self, version: str | None, percent: float) -> Route:
        return replace(self, canary=version if percent > 0 else None, canary_percent=percent if version else 0.0)


class VersionRegistry:
    """The routing table: a path opens that SQLite file; a Database is owned (closed with the registry)."""

    def __init__(self, database: Database | Path, rng: random.Random | None = None) -> None:
        self._db = database if isinstance(database, Database) else open_sqlite(database)
        self._rng = rng or random.Random()
        self._in_flight: Counter[tuple[str, str]] = Counter()
        # Read once, then cached: a request never waits on the database. This process writes through the cache; on a
        # shared database other gateways write too, and follow() rereads the table in the background.
        self._routes: dict[str, Route | None] = {}
        self._versions: dict[str, dict[str, str]] = {}  # the same for model_versions
        self._cache_lock = threading.Lock()  # refresh() runs in a thread: this process's own writes win over it
        self._writes = 0
        self._live: dict[str, dict[str, int]] = {}  # READY workers per version, as the reconciler last saw them
        self._pending: set[tuple[str, str]] = set()  # (model, version) loaded here but not gated yet: not live

    def close(self) -> None:
        self._db.close()

    def route(self, model: str) -> Route | None:
        if model not in self._routes:
            self._routes[model] = self._read_route(model)
        return self._routes[model]

    def _read_route(self, model: str) -> Route | None:
        row = self._db.row("SELECT default_version, canary_version, canary_percent, previous_version, "
                           "previous_archive FROM routes WHERE model = ?", (model,))
        return Route(*row) if row else None

    def _read_versions(self, model: str) -> dict[str, str]:
        return dict(self._db.rows("SELECT version, archive FROM model_versions WHERE model = ? ORDER BY deployed_at",
                                  (model,)))

    def refresh(self) -> None:
        """Reread every route and version list this process has cached (another gateway on the shared database may
        have changed them). Runs in a thread; a write of this process made meanwhile is kept, not what was read."""
        writes = self._writes
        routes = {model: self._read_route(model) for model in list(self._routes)}
        versions = {model: self._read_versions(model) for model in list(self._versions)}
        with self._cache_lock:
            if writes == self._writes:
                self._routes.update(routes)
                self._versions.update(versions)

    def reload(self, model: str) -> None:
        """`model`'s route and versions as the database holds them now, whatever this process wrote or read: what a
        driver acts on once it holds the driver's lock (the background reread may be a refresh interval old, and a
        dead driver's last change younger than that)."""
        route, versions = self._read_route(model), self._read_versions(model)
        with self._cache_lock:
            self._writes += 1
            self._routes[model] = route
            self._versions[model] = versions

    async def follow(self, every_s: float) -> None:
        """refresh() every `every_s`, off the event loop, for as long as the gateway runs (PROXY_STATE_REFRESH_S)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await asyncio.to_thread(self.refresh)
            except UNAVAILABLE as exc:  # the last routes read keep serving; the next round tries again
                log.warning("could not reread the routing table: %s", exc)

    def _cached(self, model: str, route: Route | None = None, versions_changed: bool = False) -> None:
        with self._cache_lock:
            self._writes += 1
            if route is not None:
                self._routes[model] = route
            if versions_changed:
                self._versions.pop(model, None)

    def set_route(self, model: str, route: Route) -> None:
        self._db.run(
            "INSERT INTO routes VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET "
            "default_version = excluded.default_version, canary_version = excluded.canary_version, "
            "canary_percent = excluded.canary_percent, previous_version = excluded.previous_version, "
            "previous_archive = excluded.previous_archive",
            (model, route.default, route.canary, route.canary_percent, route.previous, route.previous_archive),
        )
        self._cached(model, route=route)

    def versions(self, model: str) -> dict[str, str]:
        """version -> archive file name, in deployment order."""
        return dict(self._cached_versions(model))

    def _cached_versions(self, model: str) -> dict[str, str]:
        if model not in self._versions:
            self._versions[model] = self._read_versions(model)
        return self._versions[model]

    def add_version(self, model: str, version: str, archive: str) -> None:
        self._db.run("INSERT INTO model_versions VALUES (?, ?, ?, ?) ON CONFLICT (model, version) DO UPDATE SET "
                     "archive = excluded.archive, deployed_at = excluded.deployed_at",
                     (model, version, archive, time.time()))
        self._cached(model, versions_changed=True)

    def remove_version(self, model: str, version: str) -> None:
        self._db.run("DELETE FROM model_versions WHERE model = ? AND version = ?", (model, version))
        self._cached(model, versions_changed=True)

    def knows(self, model: str, version: str) -> bool:
        """Whether a request may name this version: any version before the first reconcile has filled the table
        (TorchServe answers for itself then), only a registered one after."""
        return self.route(model) is None or version in self._cached_versions(model)  # no copy per request

    def choose(self, model: str) -> str | None:
        """The version for one request: the canary with its share of the traffic, else the default. A control
        plane, which knows what its own TorchServe has live, never picks a version that has no live worker there
        (on a shared table another pod may have routed to a version this pod is still loading): then no canary, and
        the previous default while the new one loads."""
        route = self.route(model)
        if route is None:
            return None
        if route.canary and self._rng.random() * 100 < route.canary_percent and self.serving(model, route.canary):
            return route.canary
        if route.previous and not self.serving(model, route.default) and self.serving(model, route.previous):
            return route.previous
        return route.default

    @contextmanager
    def in_flight(self, model: str, version: str | None) -> Iterator[None]:
        key = (model, version or "")
        self._in_flight[key] += 1
        try:
            yield
        finally:
            self._in_flight[key] -= 1
            if self._in_flight[key] <= 0:
                del self._in_flight[key]  # nothing is kept per name once its requests are answered

    def in_flight_count(self, model: str, version: str) -> int:
        return self._in_flight[(model, version)]

    def in_flight_by_version(self, model: str) -> dict[str, int]:
        return {version: count for (name, version), count in list(self._in_flight.items()) if name == model}

    def observe_live(self, model: str, workers: dict[str, int]) -> None:
        self._live[model] = {version: count for version, count in workers.items()
                             if (model, version) not in self._pending}

    def serving(self, model: str, version: str) -> bool:
        """Whether this process may send `version` traffic: not still being gated here, and live on its TorchServe
        as last seen (always, for a gateway that never looks: PROXY_CONTROL_PLANE=false)."""
        if (model, version) in self._pending:
            return False
        live = self._live.get(model)
        return live is None or live.get(version, 0) > 0

    @contextmanager
    def pending(self, model: str, version: str) -> Iterator[None]:
        """While a version loads and is gated here, it is not live, whatever TorchServe says of its workers."""
        self._pending.add((model, version))
        try:
            yield
        finally:
            self._pending.discard((model, version))

    def mark_live(self, model: str, version: str) -> None:
        """A version this process just registered and saw ready, before the next observe_live."""
        live = self._live.setdefault(model, {})
        live[version] = max(1, live.get(version, 0))

    def live_workers(self, model: str) -> dict[str, int]:
        return dict(self._live.get(model, {}))
