"""Backup and restore of what the gateway keeps: the token database (tokens, the routing table and the deployed
versions live in it) and the feedback datasets with their manifests. Archives are not copied: they are build
outputs kept in the model store, and the routing table names them.

    python -m auth_plugin backup DIR      # safe while the proxy runs: SQLite's online backup, files copied whole
    python -m auth_plugin restore DIR     # into the paths the settings name; the proxy must be stopped

With PROXY_DATABASE_URL set the state is in PostgreSQL: back it up with the server's own tools (pg_dump, or the
managed service's snapshots); these commands refuse rather than copy an unrelated SQLite file.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from auth_plugin.settings import ProxySettings

_DATABASE, _DATASETS, _MANIFEST = "tokens.sqlite3", "datasets", "backup.json"


class BackupError(Exception):
    pass


def _sqlite_only(settings: ProxySettings) -> None:
    if settings.database_url:
        raise BackupError("the state is in PostgreSQL (PROXY_DATABASE_URL): back it up with pg_dump or the "
                          "database service's snapshots; this command copies the SQLite file only")


def backup(settings: ProxySettings, target: Path) -> dict[str, object]:
    _sqlite_only(settings)
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty: back up into a new folder")
    target.mkdir(parents=True, exist_ok=True)
    if not settings.token_db.is_file():
        raise BackupError(f"no token database at {settings.token_db}: nothing to back up")
    source = sqlite3.connect(settings.token_db)
    copy = sqlite3.connect(target / _DATABASE)
    try:
        source.backup(copy)  # a consistent snapshot even while the proxy writes
    finally:
        copy.close()
        source.close()
    if settings.datasets_dir.is_dir():
        shutil.copytree(settings.datasets_dir, target / _DATASETS, ignore=shutil.ignore_patterns("*.partial"))
    summary = {"created_at": datetime.now(UTC).isoformat(timespec="seconds"),
               "datasets": sorted(p.name for p in (target / _DATASETS).iterdir()) if (target / _DATASETS).is_dir()
               else []}
    (target / _MANIFEST).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def restore(settings: ProxySettings, source: Path) -> dict[str, object]:
    _sqlite_only(settings)
    if not (source / _MANIFEST).is_file() or not (source / _DATABASE).is_file():
        raise BackupError(f"{source} is not a backup made by `python -m auth_plugin backup`")
    if settings.token_db.exists() or (settings.datasets_dir.is_dir() and any(settings.datasets_dir.iterdir())):
        raise BackupError(f"{settings.token_db} or {settings.datasets_dir} already holds data: restore into a fresh "
                          "run folder (set PROXY_TOKEN_DB and PROXY_DATASETS_DIR), or move them away first")
    settings.token_db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / _DATABASE, settings.token_db)
    if (source / _DATASETS).is_dir():
        shutil.copytree(source / _DATASETS, settings.datasets_dir, dirs_exist_ok=True)
    return json.loads((source / _MANIFEST).read_text())
