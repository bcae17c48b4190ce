"""The gateway's database layer (issue 15): numbered migrations applied once, by one process at a time, on SQLite
and on a real PostgreSQL; a lost connection is a 503 then a reconnect; the database URL's password never reaches
an error, a log line, a traceback or the CLI's output."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import time
import traceback

import pytest

from auth_plugin import backup, migrations
from auth_plugin.app import create_app
from auth_plugin.auth import Authenticator
from auth_plugin.database import (
    DatabaseError,
    DatabaseUnavailable,
    describe_url,
    redact_credentials,
    to_postgres,
)
from auth_plugin.log_safety import RedactTokens, redact
from auth_plugin.migrations import MIGRATIONS, Migration, open_database, open_sqlite
from auth_plugin.settings import ProxySettings
from auth_plugin.token_store import TokenStore
from food_rotation.service_error import ServiceError
from tests.conftest import ROOT
from tests.unit.proxy.conftest import FakeTorchServe

STEPS = [(m.number, m.name) for m in MIGRATIONS]


def test_each_step_is_applied_once_and_a_second_open_is_a_no_op(open_db):
    first = open_db()
    assert migrations.applied(first) == STEPS
    assert migrations.apply(first) == []
    second = open_db()
    assert migrations.applied(second) == STEPS
    extra = Migration(len(STEPS) + 1, "a later step", sqlite=("CREATE TABLE later (x INTEGER)",),
                      postgresql=("CREATE TABLE later (x INTEGER)",))
    assert migrations.apply(second, (*MIGRATIONS, extra)) == [extra.number]  # only the new one, on a live database
    assert migrations.apply(first, (*MIGRATIONS, extra)) == []
    assert first.rows("SELECT count(*) FROM later") == [(0,)]
    first.close()
    second.close()


def test_a_failed_step_leaves_nothing_half_done(open_db):
    database = open_db()
    broken = Migration(len(STEPS) + 1, "broken", sqlite=("CREATE TABLE half (x INTEGER)", "NOT SQL"),
                       postgresql=("CREATE TABLE half (x INTEGER)", "NOT SQL"))
    with pytest.raises(Exception, match="syntax error"):
        migrations.apply(database, (*MIGRATIONS, broken))
    assert migrations.applied(database) == STEPS
    fixed = Migration(broken.number, "fixed", sqlite=("CREATE TABLE half (x INTEGER)",),
                      postgresql=("CREATE TABLE half (x INTEGER)",))
    assert migrations.apply(database, (*MIGRATIONS, fixed)) == [fixed.number]  # `half` was rolled back with it
    database.close()


_OPEN_AT = """
import dataclasses, sys, time
from pathlib import Path
from auth_plugin import backup, migrations
from auth_plugin.app import create_app
from auth_plugin.database import PostgresDatabase, SqliteDatabase
first = migrations.MIGRATIONS[0]  # made slow, so that the processes' migrations overlap unless one lock orders them
slow = dataclasses.replace(first, postgresql=("SELECT pg_sleep(0.3)", *first.postgresql))
database = PostgresDatabase(sys.argv[2]) if sys.argv[2] else SqliteDatabase(Path(sys.argv[3]))
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
migrations.apply(database, (slow, *migrations.MIGRATIONS[1:]))
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_a_new_database_at_once_migrate_it_once(request, tmp_path, backend):
    url = request.getfixturevalue("postgres").database() if backend == "postgresql" else ""
    start_at = time.time() + 2.0  # every process imported and waiting, then all open in the same instant
    processes = [subprocess.Popen([sys.executable, "-c", _OPEN_AT, str(start_at), url, str(tmp_path / "db.sqlite3")],
                                  cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [process.communicate(timeout=60)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, errors
    database = open_database(ProxySettings(database_url=url or None), tmp_path / "db.sqlite3")
    assert database.rows("SELECT number FROM schema_migrations ORDER BY number") == [(n,) for n, _ in STEPS]
    database.close()


def test_a_file_from_before_migrations_is_adopted_as_it_is(tmp_path):
    path = tmp_path / "tokens.sqlite3"
    old = sqlite3.connect(path)
    old.execute(MIGRATIONS[0].sqlite[0])  # what TokenStore created before: the same CREATE TABLE IF NOT EXISTS
    old.execute("INSERT INTO tokens (token_hash, user, scopes, created_at, expires_at) VALUES "
                "('h', 'cook', 'predict', 1, 2)")
    old.commit()
    old.close()
    database = open_sqlite(path)
    assert migrations.applied(database) == STEPS
    assert [record.user for record in TokenStore(database).all()] == ["cook"]
    database.close()


def test_placeholders_are_translated_in_one_place():
    assert to_postgres("SELECT a FROM t WHERE b = ? AND c LIKE 'x%'") == "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'"


def _shown(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_a_wrong_password_or_a_bad_url_never_shows_the_password(postgres):
    secret = "Wr0ng-pa55word-xyz"
    for url, kind in ((postgres.url(password=secret), DatabaseUnavailable),  # refused by the server
                      (f"gateway:{secret}@127.0.0.1:{postgres.port}/postgres", DatabaseError),  # psycopg quotes it
                      (f"postgresql://gateway:{secret}@127.0.0.1:1/postgres", DatabaseUnavailable)):  # nobody there
        with pytest.raises(kind) as failed:
            open_database(ProxySettings(database_url=url))
        assert secret not in _shown(failed.value) and str(failed.value)
    settings = ProxySettings(database_url=postgres.url())
    assert postgres.password not in repr(settings)
    database = open_database(settings)
    assert postgres.password not in database.describe() + repr(database)
    assert database.describe() == f"PostgreSQL postgresql://[redacted]@127.0.0.1:{postgres.port}/postgres"
    database.close()


def test_a_url_is_described_without_its_credentials():
    assert describe_url("postgresql://u:p%40ss@db:5432/x") == "postgresql://[redacted]@db:5432/x"
    assert describe_url("postgres://db/x") == "postgres://db/x"
    assert "pw" not in describe_url("host=db password=pw") and "pw" not in describe_url("postgresql://u:pw@db:99999/")
    assert "p@ss" not in redact_credentials("auth failed for p@ss", "postgresql://u:p%40ss@db/x")


def test_whatever_logs_a_database_url_its_credentials_are_masked(postgres):
    line = f"could not reach {postgres.url()} (also postgres://u:p4ss@h/db and host=h password=pw2 user=u)"
    assert postgres.password not in redact(line) and "p4ss" not in redact(line) and "pw2" not in redact(line)
    record = logging.LogRecord("psycopg", logging.WARNING, __file__, 1, "%s", (line,), None)
    RedactTokens().filter(record)
    assert postgres.password not in record.getMessage() and "127.0.0.1" in record.getMessage()


def test_the_cli_on_a_wrong_password_says_so_without_it(postgres):
    secret = "Cl1-wrong-secret"
    environment = {**os.environ, "PROXY_DATABASE_URL": postgres.url(password=secret)}
    result = subprocess.run([sys.executable, "-m", "auth_plugin", "tokens", "list"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=environment)
    assert result.returncode == 1 and "password authentication failed" in result.stderr
    assert secret not in result.stdout + result.stderr


async def test_a_lost_connection_is_a_503_then_the_next_call_reconnects(postgres):
    settings = ProxySettings(database_url=postgres.database())
    store = TokenStore(open_database(settings))
    token, _ = store.issue("cook", ["predict"], 3600)
    admin = open_database(settings)
    admin.rows("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
               "AND pid <> pg_backend_pid()")  # what a server restart or a failover does to the gateway
    authenticator = Authenticator(store, None, cache_s=0.0)
    with pytest.raises(ServiceError) as busy:
        await authenticator.authenticate({"Authorization": f"Bearer {token}"}, "predict")
    assert busy.value.status == 503 and postgres.password not in _shown(busy.value)
    assert (await authenticator.authenticate({"Authorization": f"Bearer {token}"}, "predict")).user == "cook"
    store.close()
    admin.close()


def test_backup_and_restore_refuse_a_postgresql_state(tmp_path):
    settings = ProxySettings(database_url="postgresql://gateway:s3cret-pw@db.internal/gateway", token_db=tmp_path / "t")
    for command in (backup.backup, backup.restore):
        with pytest.raises(backup.BackupError, match="pg_dump") as refused:
            command(settings, tmp_path / "folder")
        assert "s3cret-pw" not in str(refused.value)


async def test_a_gateway_on_postgresql_serves_and_shows_the_url_nowhere(postgres, tmp_path, aiohttp_server,
                                                                        aiohttp_client, caplog):
    fake = FakeTorchServe(tmp_path / "key_file.json")
    upstream = str((await aiohttp_server(fake.app())).make_url(""))
    settings = ProxySettings(inference_url=upstream, management_url=upstream, torchserve_key_file=fake.key_file,
                             database_url=postgres.database(), datasets_dir=tmp_path / "datasets")
    store = TokenStore(open_database(settings))
    token, _ = store.issue("root", ["admin", "predict"], 3600)
    caplog.set_level(logging.INFO)
    proxy = await aiohttp_client(create_app(settings))
    auth = {"Authorization": f"Bearer {token}"}
    assert (await proxy.post("/predictions/food_rotation", data=b"photo", headers=auth)).status == 200
    shown = []
    for path in ("/", "/static/app.js", "/whoami", "/admin/models/food_rotation", "/admin/audit", "/metrics",
                 "/readyz", "/healthz"):
        answer = await proxy.get(path, headers=auth)
        assert answer.status < 500, path
        shown.append(await answer.text())
    await proxy.close()
    store.close()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "state kept in PostgreSQL postgresql://[redacted]@127.0.0.1" in logged
    assert postgres.password not in logged + "".join(shown)
