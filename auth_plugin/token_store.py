"""Opaque access tokens for people: random, shown once, stored only as SHA-256 hashes in the gateway's database
(the SQLite file, or the PostgreSQL that several gateways share: auth_plugin/database.py).

A token is `frs_` + 32 random bytes (256 bits) in URL-safe base64. Its hash is the lookup key, so the
database never holds anything that would let a reader call the API.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from auth_plugin.database import Database
from auth_plugin.migrations import open_sqlite

PREFIX = "frs_"
SCOPES = frozenset({"predict", "admin"})


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenRecord:
    id: int
    token_hash: str
    user: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float
    revoked: bool
    last_used_at: float | None = None  # to the minute (Authenticator.TOUCH_EVERY_S); None: never used

    def state(self, now: float) -> str:
        return "revoked" if self.revoked else ("expired" if self.expires_at <= now else "active")


MAX_TTL_S = 3650 * 86400  # ten years: past that, a token should be a service account's, rotated by hand


_COLUMNS = ('id, token_hash, "user", scopes, created_at, expires_at, revoked, '  # "user" is reserved in PostgreSQL
            "last_used_at")


class TokenStore:
    """Safe to share between the proxy, the CLI and other gateways: each opens its own connection. Given a path, it
    opens (and closes) that SQLite file; given a Database, it owns that one (closed with the store)."""

    def __init__(self, database: Database | Path, busy_timeout_s: float = 5.0) -> None:
        self._db = database if isinstance(database, Database) else open_sqlite(database, busy_timeout_s)

    def close(self) -> None:
        self._db.close()

    def issue(self, user: str, scopes: Iterable[str], ttl_s: float) -> tuple[str, TokenRecord]:
        """A new token (returned once, never stored) and its record."""
        scope_set = frozenset(scopes)
        if not scope_set or not scope_set <= SCOPES:
            raise ValueError(f"scopes must be a non-empty subset of {sorted(SCOPES)}, got {sorted(scope_set)}")
        if not user.strip():
            raise ValueError("user must not be empty")
        if not 0 < ttl_s <= MAX_TTL_S:  # NaN and infinity fail too: an expiry must stay a readable date
            raise ValueError(f"the token's lifetime must be from 1 s to {MAX_TTL_S // 86400} days, got {ttl_s!r}")
        token = PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        row = self._db.row(
            'INSERT INTO tokens (token_hash, "user", scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?) '
            f"RETURNING {_COLUMNS}",
            (hash_token(token), user, " ".join(sorted(scope_set)), now, now + ttl_s),
        )
        assert row is not None  # RETURNING gives the row just inserted
        return token, _record(row)

    def lookup(self, token: str) -> TokenRecord | None:
        """The record of this token, whatever its state; None if unknown. The proxy calls it off its event loop
        (another process may hold the database's write lock for a while), so one connection is shared by threads."""
        wanted = hash_token(token)
        row = self._db.row(f"SELECT {_COLUMNS} FROM tokens WHERE token_hash = ?", (wanted,))
        if row is None or not hmac.compare_digest(row[1], wanted):
            return None
        return _record(row)

    def touch(self, token_id: int, at: float) -> None:
        """Record that the token was used at `at` (the gateway does so at most once a minute per token)."""
        self._db.run("UPDATE tokens SET last_used_at = ? WHERE id = ?", (at, token_id))

    def revoke(self, token_id: int) -> bool:
        return self._db.run("UPDATE tokens SET revoked = 1 WHERE id = ?", (token_id,)) == 1

    def all(self) -> list[TokenRecord]:
        return [_record(row) for row in self._db.rows(f"SELECT {_COLUMNS} FROM tokens ORDER BY id")]


def _record(row: tuple) -> TokenRecord:
    return TokenRecord(id=row[0], token_hash=row[1], user=row[2], scopes=frozenset(row[3].split()),
                       created_at=row[4], expires_at=row[5], revoked=bool(row[6]), last_used_at=row[7])
