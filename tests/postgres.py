"""A real PostgreSQL for the tests: Debian's `initdb` + `pg_ctl` in a temporary folder, on a free loopback port,
password-protected (scram-sha-256) so that the URLs the tests use carry a password as a deployment's do.

PostgreSQL refuses to run as root, and the tests run as root here and in CI: the server then runs as the
`postgres` user that Debian's package creates (the folder is made theirs). scripts/ensure_postgres.sh installs the
package; the `postgres` fixture in tests/conftest.py starts one server for the session, only when a test asks.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from operations.processes import free_ports

USER = "gateway"


def bin_dir() -> Path | None:
    """The newest installed server's binaries (/usr/lib/postgresql/<version>/bin), else initdb on the PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


class PostgresServer:
    """One throwaway server: start() (about 2 s), database() for a fresh empty database each test, stop()."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.folder = Path(tempfile.mkdtemp(prefix="frs-postgres-"))  # not pytest's tmp: root-only, 0700
        self.password = secrets.token_urlsafe(12)
        (self.port,) = free_ports(1)
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as_owner = ["runuser", "-u", "postgres", "--"]
        self._databases = 0

    def _run(self, *command: str | Path) -> None:
        result = subprocess.run([*self._as_owner, *map(str, command)], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            log = self.folder / "server.log"
            raise RuntimeError(f"{Path(command[0]).name} failed: {result.stderr[-2000:]}"
                               f"{log.read_text()[-2000:] if log.is_file() else ''}")

    def start(self) -> PostgresServer:
        password_file = self.folder / "password"
        password_file.write_text(self.password + "\n")
        if self._as_owner:
            shutil.chown(password_file, "postgres")
        self._run(self.binaries / "initdb", "-D", self.folder / "data", "-U", USER, f"--pwfile={password_file}",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        password_file.unlink()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._run(self.binaries / "pg_ctl", "-D", self.folder / "data", "-o", options, "-l",
                  self.folder / "server.log", "-w", "-t", "30", "start")
        return self

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{USER}:{password or self.password}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """The URL of a new, empty database: each test starts from no tables, as with a new SQLite file."""
        import psycopg

        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.folder / "data" / "postmaster.pid").is_file():
                self._run(self.binaries / "pg_ctl", "-D", self.folder / "data", "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
