"""Which versions of a model are deployed, which one is the default and which takes a canary share.

Persisted in the gateway's database (its SQLite file, or a PostgreSQL several gateways share) so that a restart of
the proxy or of TorchServe restores the same routing; in-flight counts per version live in memory (they only matter
while this process forwards requests).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from auth_plugin.database import Database, open_sqlite


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
        # This process is the only writer (the control plane; other gateways on a shared database serve predictions
        # and do not see a route change until they restart: a later step of issue 15): read once, then cached.
        self._routes: dict[str, Route | None] = {}
        self._versions: dict[str, dict[str, str]] = {}  # the same for model_versions
        self._live: dict[str, dict[str, int]] = {}  # READY workers per version, as the reconciler last saw them

    def close(self) -> None:
        self._db.close()

    def route(self, model: str) -> Route | None:
        if model in self._routes:
            return self._routes[model]
        row = self._db.row("SELECT default_version, canary_version, canary_percent, previous_version, "
                           "previous_archive FROM routes WHERE model = ?", (model,))
        self._routes[model] = Route(*row) if row else None
        return self._routes[model]

    def set_route(self, model: str, route: Route) -> None:
        self._db.run(
            "INSERT INTO routes VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (model) DO UPDATE SET "
            "default_version = excluded.default_version, canary_version = excluded.canary_version, "
            "canary_percent = excluded.canary_percent, previous_version = excluded.previous_version, "
            "previous_archive = excluded.previous_archive",
            (model, route.default, route.canary, route.canary_percent, route.previous, route.previous_archive),
        )
        self._routes[model] = route

    def versions(self, model: str) -> dict[str, str]:
        """version -> archive file name, in deployment order."""
        return dict(self._cached_versions(model))

    def _cached_versions(self, model: str) -> dict[str, str]:
        if model not in self._versions:
            rows = self._db.rows("SELECT version, archive FROM model_versions WHERE model = ? "
                                 "ORDER BY deployed_at", (model,))
            self._versions[model] = dict(rows)
        return self._versions[model]

    def add_version(self, model: str, version: str, archive: str) -> None:
        self._db.run("INSERT INTO model_versions VALUES (?, ?, ?, ?) ON CONFLICT (model, version) DO UPDATE SET "
                     "archive = excluded.archive, deployed_at = excluded.deployed_at",
                     (model, version, archive, time.time()))
        self._versions.pop(model, None)

    def remove_version(self, model: str, version: str) -> None:
        self._db.run("DELETE FROM model_versions WHERE model = ? AND version = ?", (model, version))
        self._versions.pop(model, None)

    def knows(self, model: str, version: str) -> bool:
        """Whether a request may name this version: any version before the first reconcile has filled the table
        (TorchServe answers for itself then), only a registered one after."""
        return self.route(model) is None or version in self._cached_versions(model)  # no copy per request

    def choose(self, model: str) -> str | None:
        """The version for one request: the canary with its share of the traffic, else the default."""
        route = self.route(model)
        if route is None:
            return None
        if route.canary and self._rng.random() * 100 < route.canary_percent:
            return route.canary
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

    def observe_live(self, model: str, workers: dict[str, int]) -> None:
        self._live[model] = dict(workers)

    def live_workers(self, model: str) -> dict[str, int]:
        return dict(self._live.get(model, {}))
