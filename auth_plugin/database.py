"""Where the gateway keeps its state: the embedded SQLite file (one machine, the default) or a PostgreSQL server
that several gateways share (`PROXY_DATABASE_URL`, issue 15).

The stores write their SQL once, in the dialect both understand (`?` placeholders, `ON CONFLICT ... DO UPDATE`,
`RETURNING`); only the schema differs, and it lives in auth_plugin/migrations.py, which also opens each store's
database (open_database, open_sqlite: connected here, then migrated). Each store has its own `Database`: one
connection, serialised by a lock, because the proxy calls the stores from threads as well as from
its event loop. The database URL carries a password: it never reaches an error message or a log line (see
`redact_credentials`), and `describe()` is what may be shown.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import psycopg


Execute = Callable[[str, Sequence[Any]], list[tuple]]
REDACTED = "[redacted]"
_CREDENTIALS = re.compile(
    r"(?<=://)[^\s/@'\"]+(?=@)"  # user:password@ of any URL (postgresql://, postgres://, http://)
    r"|(?<=password=)[^\s'\"]+",  # a key=value connection string's password
    re.IGNORECASE,
)
_MIGRATION_LOCK = 0x66727321  # "frs!": the advisory lock every gateway takes while it migrates the schema


class DatabaseError(Exception):
    """A database failure whose message is safe to show: any credential it might have carried is masked."""


class DatabaseUnavailable(DatabaseError):
    """The server could not be reached or dropped the connection; the next call reconnects."""


# What a caller treats as "try again shortly" (HTTP 503): SQLite's "database is locked" and a lost PostgreSQL.
UNAVAILABLE: tuple[type[Exception], ...] = (sqlite3.OperationalError, DatabaseUnavailable)


def redact_credentials(text: str, url: str | None = None) -> str:
    """`text` with the URL's password and every URL's user:password masked, whatever the driver echoed."""
    if url:
        text = text.replace(url, describe_url(url))
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        for form in {password, unquote(password)} if password else ():
            if len(form) >= 3:  # a one-letter password would mask every such letter
                text = text.replace(form, REDACTED)
    return _CREDENTIALS.sub(REDACTED, text)


def describe_url(url: str) -> str:
    """The URL as it may be shown: scheme, host, port and database name, never the user's credentials."""
    try:
        parts = urlsplit(url)
        where = f"{parts.hostname or 'localhost'}{f':{parts.port}' if parts.port else ''}{parts.path}"
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("postgresql", "postgres"):  # key=value strings too: nothing of them
        return f"{REDACTED} (not a postgresql:// URL)"
    return f"{parts.scheme}://{REDACTED}@{where}" if parts.username else f"{parts.scheme}://{where}"


class Database(ABC):
    """One connection to the gateway's database; every call holds the lock for the length of one statement."""

    backend: ClassVar[str]

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._execute(sql, params)[0]

    def row(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """The number of rows the statement changed."""
        with self._lock:
            return self._execute(sql, params)[1]

    @contextmanager
    def migrating(self) -> Iterator[Execute]:
        """One transaction that no other process migrates at the same time; committed when the block ends."""
        with self._lock, self._exclusive_transaction():
            yield lambda sql, params=(): self._execute(sql, params)[0]

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[tuple], int]: ...

    @abstractmethod
    def _exclusive_transaction(self) -> Any: ...

    @abstractmethod
    def describe(self) -> str:
        """Where the state lives, fit for a log line."""

    @abstractmethod
    def close(self) -> None: ...


class SqliteDatabase(Database):
    """The embedded default: a local file in WAL mode, shared by the proxy and the CLI through SQLite's locks."""

    backend = "sqlite"

    def __init__(self, path: Path, busy_timeout_s: float = 5.0) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")

    def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[tuple], int]:
        cursor = self._db.execute(sql, tuple(params))
        return (cursor.fetchall() if cursor.description else []), cursor.rowcount

    @contextmanager
    def _exclusive_transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # the write lock now: a second process waits here (busy timeout)
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def describe(self) -> str:
        return f"SQLite file {self.path}"

    def close(self) -> None:
        with self._lock:  # not under a statement another thread is running
            self._db.close()


class PostgresDatabase(Database):
    """A PostgreSQL server shared by every gateway; autocommit, one statement per call, reconnects after a loss."""

    backend = "postgresql"

    def __init__(self, url: str, connect_timeout_s: float = 5.0) -> None:
        super().__init__()
        self._url = url
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection | None = None
        with self._lock:
            self._connection()  # a wrong URL or an unreachable server stops the start, not the first request

    def _connection(self) -> psycopg.Connection:
        import psycopg  # only a gateway configured for PostgreSQL needs the driver

        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                # No server-side prepared statements: a transaction-pooling PgBouncer in front cannot keep them.
                self._conn = psycopg.connect(self._url, autocommit=True, prepare_threshold=None,
                                             connect_timeout=max(1, round(self._connect_timeout_s)))
            except psycopg.OperationalError as exc:
                raise DatabaseUnavailable(redact_credentials(str(exc).strip(), self._url)) from None
            except psycopg.Error as exc:  # a malformed URL: psycopg quotes it whole, password included
                raise DatabaseError("PROXY_DATABASE_URL is not a usable connection URL: "
                                    + redact_credentials(str(exc).strip(), self._url)) from None
        return self._conn

    def _execute(self, sql: str, params: Sequence[Any]) -> tuple[list[tuple], int]:
        import psycopg

        try:
            cursor = self._connection().execute(to_postgres(sql), tuple(params))
            return (cursor.fetchall() if cursor.description else []), cursor.rowcount
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(redact_credentials(str(exc).strip(), self._url)) from None

    @contextmanager
    def _exclusive_transaction(self) -> Iterator[None]:
        with self._connection().transaction():
            self._execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))  # released at commit
            yield

    def describe(self) -> str:
        return f"PostgreSQL {describe_url(self._url)}"

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def __repr__(self) -> str:
        return f"<PostgresDatabase {describe_url(self._url)}>"


class AdvisoryLock:
    """PostgreSQL session-level advisory locks, on a connection of their own: held across statements and
    transactions until released, and dropped by the server when the connection dies (a crashed holder never
    leaves one behind). What several gateways on one database take to do one thing at a time."""

    def __init__(self, database: Database) -> None:
        if database.backend != "postgresql":
            raise ValueError("advisory locks need PostgreSQL")
        self._db = database

    @staticmethod
    def key(namespace: int, name: str) -> int:
        """A 64-bit key: a 32-bit namespace (one per kind of lock) and the crc32 of the name locked."""
        return (namespace << 32) | zlib.crc32(name.encode())

    def try_acquire(self, key: int) -> bool:
        return bool(self._db.row("SELECT pg_try_advisory_lock(?)", (key,))[0])

    def release(self, key: int) -> None:
        self._db.row("SELECT pg_advisory_unlock(?)", (key,))

    def acquire(self, key: int, wait_s: float, poll_s: float = 0.05) -> bool:
        """Blocks (this thread) up to `wait_s` for the lock; whether it was taken."""
        deadline = time.monotonic() + wait_s
        while not (taken := self.try_acquire(key)) and time.monotonic() < deadline:
            time.sleep(poll_s)
        return taken

    @contextmanager
    def held(self, key: int, wait_s: float) -> Iterator[bool]:
        """acquire(), held until the block ends; yields whether it was taken, so the caller says what "busy" means
        in its own terms."""
        taken = self.acquire(key, wait_s)
        try:
            yield taken
        finally:
            if taken:
                with suppress(*UNAVAILABLE):  # the connection is gone, and the lock with it
                    self.release(key)

    def close(self) -> None:
        self._db.close()


def to_postgres(sql: str) -> str:
    """SQLite's `?` placeholders as psycopg's `%s` (a literal % doubled): the stores' SQL is written once."""
    return sql.replace("%", "%%").replace("?", "%s")
