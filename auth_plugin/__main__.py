"""python -m auth_plugin serve | tokens issue|list|revoke | models list|deploy|canary|promote|rollback|retire

    python -m auth_plugin tokens issue --user alice --scopes predict --ttl 30d   # prints the token once
    python -m auth_plugin tokens list
    python -m auth_plugin tokens revoke 3                                       # effective within a second
    python -m auth_plugin models deploy food_rotation-v2.0.mar --canary 10      # see auth_plugin/control/models_cli.py
    python -m auth_plugin serve                                                 # PROXY_* variables configure it
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import re
import resource
import sqlite3
import sys
import time
from pathlib import Path

import uvloop

from auth_plugin import backup, listener, log_safety, settings_table
from auth_plugin.app import create_app
from auth_plugin.control import models_cli
from auth_plugin.database import DatabaseError
from auth_plugin.listener import Limits
from auth_plugin.log_safety import AccessLogger
from auth_plugin.migrations import open_database, open_sqlite
from auth_plugin.settings import ProxySettings
from auth_plugin.tls import ReloadableTls
from auth_plugin.token_store import MAX_TTL_S, SCOPES, TokenStore

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"bad lifetime {text[:40]!r}: use e.g. 3600, 90m, 12h or 30d")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 0 < seconds <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(f"lifetime {text[:40]!r} is out of range: from 1 s to {MAX_TTL_S // 86400}d")
    return seconds


def raise_open_files_limit() -> None:
    """The soft limit on open files up to the hard one: each connection is a file, and 1,024 idle sockets were
    enough to make /healthz and predictions fail (issue 12)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536),
                                                    hard))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(stamp))


def tokens_command(args: argparse.Namespace, settings: ProxySettings) -> int:
    """On the shared PostgreSQL when PROXY_DATABASE_URL is set (and no --db names a file), else the SQLite file."""
    store = TokenStore(open_sqlite(args.db) if args.db else open_database(settings))
    try:
        if args.action == "issue":
            try:
                token, record = store.issue(args.user, args.scopes.split(","), args.ttl)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            print(token)
            print(f"# id {record.id}, user {record.user}, scopes {','.join(sorted(record.scopes))}, "
                  f"expires {_when(record.expires_at)}; it is shown only this once", file=sys.stderr)
            return 0
        if args.action == "revoke":
            if store.revoke(args.id):
                print(f"token {args.id} revoked")
                return 0
            print(f"error: no token with id {args.id}", file=sys.stderr)
            return 1
        now = time.time()
        print(f"{'id':>4}  {'user':<16} {'scopes':<14} {'expires':<20} state")
        for record in store.all():
            state = "revoked" if record.revoked else ("expired" if record.expires_at <= now else "active")
            print(f"{record.id:>4}  {record.user:<16} {','.join(sorted(record.scopes)):<14} "
                  f"{_when(record.expires_at):<20} {state}")
        return 0
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m auth_plugin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the proxy")
    tokens = commands.add_parser("tokens", help="manage access tokens")
    tokens.add_argument("--db", type=Path, help="SQLite token database (default: PROXY_DATABASE_URL, else "
                                                "PROXY_TOKEN_DB or .run/proxy/)")
    actions = tokens.add_subparsers(dest="action", required=True)
    issue = actions.add_parser("issue")
    issue.add_argument("--user", required=True)
    issue.add_argument("--scopes", default="predict", help=f"comma-separated, of {', '.join(sorted(SCOPES))}")
    issue.add_argument("--ttl", type=parse_ttl, default=parse_ttl("30d"), help="lifetime, e.g. 12h or 30d")
    actions.add_parser("list")
    revoke = actions.add_parser("revoke")
    revoke.add_argument("id", type=int)
    models_cli.add_parser(commands)
    commands.add_parser("settings", help="print every PROXY_* setting with its default and meaning (Markdown)")
    for name, what in (("backup", "copy tokens, routing table and datasets into a new folder"),
                       ("restore", "put a backup back into a fresh run folder (the proxy stopped)")):
        commands.add_parser(name, help=what).add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "models":
        return models_cli.run(args)
    if args.command == "settings":
        print(settings_table.markdown())
        return 0
    settings = ProxySettings.from_env(os.environ)
    if args.command in ("backup", "restore"):
        try:
            done = (backup.backup if args.command == "backup" else backup.restore)(settings, args.folder)
        except (backup.BackupError, OSError, sqlite3.Error, DatabaseError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{args.command}: {args.folder} (datasets: {', '.join(done['datasets']) or 'none'})")
        return 0
    if args.command == "tokens":
        try:
            return tokens_command(args, settings)
        except DatabaseError as exc:  # PostgreSQL out of reach or a malformed URL: the message is already masked
            print(f"error: {exc}", file=sys.stderr)
            return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log_safety.install()
    if not (is_loopback(settings.host) or settings.behind_tls_terminator or settings.tls):
        logging.getLogger("auth_plugin").warning(
            "listening on %s without TLS: tokens cross the network in clear. Put a TLS terminator in front "
            "(docs/security.md) and set PROXY_BEHIND_TLS_TERMINATOR=1, or give the gateway a certificate "
            "(PROXY_TLS_CERT_FILE, docs/deploying.md)", settings.host)
    raise_open_files_limit()
    # uvloop: the proxy shares two cores with TorchServe's workers, so every microsecond it spends is theirs.
    limits = Limits(settings.header_timeout_s, settings.max_connections, settings.max_connections_per_address)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        tls = ReloadableTls(settings) if settings.tls else None
        runner.run(listener.serve(create_app(settings), settings.host, settings.port, limits, tls,
                                  access_log_class=AccessLogger, keepalive_timeout=settings.keepalive_timeout_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
