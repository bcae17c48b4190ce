"""Who made which version the default, when and how, and every admin action with its outcome: both persisted in
the gateway's database (its SQLite file or a shared PostgreSQL) beside the routing table, so a restart or a restored
backup keeps them.

The default history is what a rollback reads. A rollback marks the version it leaves as rolled back, so the next
rollback steps further back (3.0 -> 2.0 -> 1.0) instead of toggling between the last two defaults; a version
named explicitly may be any earlier default.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from auth_plugin.control.desired.versions import Route
from auth_plugin.database import Database
from auth_plugin.migrations import open_sqlite
from food_rotation.service_error import ServiceError

AUDIT_FIELDS = 20
AUDIT_VALUE_CHARS = 200


def audit_summary(detail: dict[str, Any]) -> dict[str, Any]:
    """At most AUDIT_FIELDS fields, each kept as it is when its JSON is at most AUDIT_VALUE_CHARS long, else cut
    to the start of that JSON with its full length: a refused 10 MB call costs the audit log a few kilobytes, not
    10 MB (issue 33)."""
    summary: dict[str, Any] = {}
    for key, value in itertools.islice(detail.items(), AUDIT_FIELDS):
        text = json.dumps(value, sort_keys=True, default=str)
        summary[str(key)[:AUDIT_VALUE_CHARS]] = (
            value if len(text) <= AUDIT_VALUE_CHARS else f"{text[:AUDIT_VALUE_CHARS]}... ({len(text)} chars)")
    if len(detail) > AUDIT_FIELDS:
        summary["..."] = f"{len(detail) - AUDIT_FIELDS} more fields"
    return summary


@dataclass(frozen=True)
class DefaultChange:
    """One entry of the default history: `version` became the default by `action` (adopted, promote, rollback,
    restored); `rolled_back` once a rollback left it."""

    seq: int
    version: str
    archive: str
    at: float
    actor: str
    action: str
    rolled_back: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: float
    actor: str
    action: str
    model: str
    detail: dict[str, Any]
    outcome: str  # "ok", or "refused <status> <code>", or "failed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class History:
    """The default history and the audit log of the control plane (its only writer: one proxy per TorchServe)."""

    def __init__(self, database: Database | Path) -> None:
        self._db = database if isinstance(database, Database) else open_sqlite(database)

    def close(self) -> None:
        self._db.close()

    def defaults(self, model: str) -> list[DefaultChange]:
        """Every default `model` has had, oldest first."""
        rows = self._db.rows("SELECT seq, version, archive, at, actor, action, rolled_back FROM default_history "
                             "WHERE model = ? ORDER BY seq", (model,))
        return [DefaultChange(*row[:6], bool(row[6])) for row in rows]

    def record_default(self, model: str, version: str, archive: str, actor: str, action: str) -> None:
        self._db.run("INSERT INTO default_history (model, version, archive, at, actor, action) "
                     "VALUES (?, ?, ?, ?, ?, ?)", (model, version, archive, time.time(), actor, action))

    def mark_rolled_back(self, model: str, version: str) -> None:
        """A rollback left `version`: no later plain rollback comes back to it (until it is promoted again)."""
        self._db.run("UPDATE default_history SET rolled_back = 1 WHERE model = ? AND version = ?",
                     (model, version))

    def rollback_target(self, model: str, current: str) -> DefaultChange | None:
        """The latest earlier default that is not the current one and was not itself rolled back."""
        for change in reversed(self.defaults(model)):
            if change.version != current and not change.rolled_back:
                return change
        return None

    def earlier_default(self, model: str, version: str) -> DefaultChange | None:
        """The latest entry of `version` as a default, rolled back or not: a rollback may name any of them."""
        return next((change for change in reversed(self.defaults(model)) if change.version == version), None)

    def start(self, model: str, route: Route, archives: dict[str, str]) -> None:
        """A routing table older than the default history: its default (and the one before it) start the history."""
        if self.defaults(model):
            return
        if route.previous is not None and route.previous_archive is not None:
            self.record_default(model, route.previous, route.previous_archive, "before the history", "adopted")
        if route.default in archives:
            self.record_default(model, route.default, archives[route.default], "before the history", "adopted")

    def rollback_to(self, model: str, route: Route, version: str | None) -> DefaultChange:
        """Where a rollback goes: `version`'s latest time as the default, or by default rollback_target's; a
        ServiceError saying why there is none."""
        if version is None:
            target = self.rollback_target(model, route.default)
            if target is None:
                raise ServiceError(409, "no_previous_version", "there is no earlier default to roll back to (a "
                                   "default already rolled back is skipped: name a version to return to it)")
            return target
        if version == route.default:
            raise ServiceError(409, "is_default", f"{version} is already the default")
        target = self.earlier_default(model, version)
        if target is None:
            raise ServiceError(404, "not_an_earlier_default", f"{model} {version} has never been the default: "
                               "deploy and promote it instead")
        return target

    def audit(self, actor: str, action: str, model: str, detail: dict[str, Any], outcome: str) -> None:
        """One entry; the request's fields as a bounded summary (audit_summary), never a body as it came."""
        self._db.run("INSERT INTO audit_log (at, actor, action, model, detail, outcome) VALUES (?, ?, ?, ?, ?, ?)",
                     (time.time(), actor, action, model, json.dumps(audit_summary(detail), sort_keys=True), outcome))

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The latest `limit` admin actions, newest first."""
        rows = self._db.rows("SELECT seq, at, actor, action, model, detail, outcome FROM audit_log "
                             "ORDER BY seq DESC LIMIT ?", (limit,))
        return [AuditEntry(seq, at, actor, action, model, json.loads(detail), outcome)
                for seq, at, actor, action, model, detail, outcome in rows]
