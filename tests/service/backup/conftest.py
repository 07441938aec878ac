"""Fixtures for `admin-api backup` / `admin-api restore`: the real CLI in a subprocess, a migrated
database of the test's own (a restore rewrites the whole database, so never the session's shared one),
and a bucket of the test's own on the session's S3 server.

The database belongs to a login role of its own, not a superuser, as in production: it owns the database
(so it is a member of pg_database_owner, which owns `public`), and everything the tests and migrations
create in it. `@pytest.mark.parametrize("database", ["superuser"], indirect=True)` connects as postgres.

    def test_x(database, cli):
        database.psql('INSERT ...')     # as the database's user
        result = cli("backup", "--namespace", "ns", "--instance", "demo")
        assert result.code == 0, result.stderr
        record = result.json()          # the one JSON line
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from admin_api.migrations import upgrade
from minio import Minio
from minio.deleteobjects import DeleteObject
from sqlalchemy.engine import make_url

from tests.support.s3 import S3Server
from tests.support.services import PG_BIN, PostgresServer

TABLES = ("USR_ACCT", "USR_CNVS_SMRY", "CNVS_MSG", "alembic_version")


@dataclass(frozen=True)
class Database:
    name: str
    url: str  # postgresql+asyncpg://, as DATABASE_URL takes it
    server: PostgresServer

    def psql(self, sql: str) -> str:
        """Run SQL as the database's own user; the output without headers or alignment."""
        result = subprocess.run(
            [str(PG_BIN / "psql"), "--no-psqlrc", "--tuples-only", "--no-align", "--set=ON_ERROR_STOP=1",
             "--dbname", self.dsn, "--command", sql],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    @property
    def dsn(self) -> str:
        return self.url.replace("postgresql+asyncpg://", "postgresql://", 1)

    def schema(self) -> str:
        """`pg_dump --schema-only`, without the random \\restrict key of each run."""
        result = subprocess.run(
            [str(PG_BIN / "pg_dump"), "--schema-only", "--dbname", self.dsn], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        return "\n".join(line for line in lines if not line.startswith(("\\restrict", "\\unrestrict")))

    def snapshot(self, tables: tuple[str, ...] = TABLES) -> dict[str, str]:
        """Every row of the tables, in a stable order: equal snapshots mean the same data."""
        return {table: self.psql(f'SELECT * FROM "{table}" ORDER BY 1') for table in tables}

    @property
    def password(self) -> str:
        return make_url(self.url).password or ""


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"expected one JSON line, got {self.stdout!r} (stderr {self.stderr!r})"
        return json.loads(lines[0])


@contextlib.contextmanager
def private_database(server: PostgresServer, *, superuser: bool = False) -> Iterator[Database]:
    """An empty database of its own, owned by a login role of its own (or postgres'); dropped afterwards."""
    name = f"backup_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    if superuser:
        server.create_database(name)
        url = server.url(name)
    else:
        password = secrets.token_hex(12)
        server.psql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        server.psql(f'CREATE DATABASE "{name}" OWNER "{name}"')
        url = server.url(name).replace(f"postgres:{server.password}@", f"{name}:{password}@", 1)
    try:
        yield Database(name, url, server)
    finally:
        server.drop_database(name)
        if not superuser:
            server.psql(f'DROP ROLE IF EXISTS "{name}"')


@pytest.fixture
def database(request: pytest.FixtureRequest, postgres_server: PostgresServer) -> Iterator[Database]:
    """A migrated database of the test's own (see the module's docstring for its owner)."""
    with private_database(postgres_server, superuser=getattr(request, "param", "owner") == "superuser") as db:
        upgrade(db.url)
        yield db


@pytest.fixture
def s3(s3_server: S3Server) -> Minio:
    return s3_server.client()


@pytest.fixture
def bucket(s3: Minio) -> Iterator[str]:
    """A bucket name of the test's own (`admin-api backup` creates it); emptied and removed afterwards."""
    name = f"backups-{uuid.uuid4().hex[:12]}"
    yield name
    with contextlib.suppress(Exception):
        if s3.bucket_exists(name):
            objects = [DeleteObject(item.object_name) for item in s3.list_objects(name, recursive=True)]
            list(s3.remove_objects(name, objects))
            s3.remove_bucket(name)


def admin_api(*args: str, env: dict[str, str]) -> Run:
    """The real console script's code path (`python -m admin_api.cli`), with only `env` and the basics:
    a developer's exported settings must not leak in (nor LLM_* be needed)."""
    basics = {name: os.environ[name] for name in ("PATH", "HOME", "TMPDIR", "LANG") if name in os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "admin_api.cli", *args],
        env={**basics, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Run(result.returncode, result.stdout, result.stderr)


@pytest.fixture
def cli(database: Database, s3_server: S3Server, bucket: str) -> Callable[..., Run]:
    """Run `admin-api ARGS...` against the test's database and bucket; keyword arguments override
    environment variables (None removes one). Every run is checked to print no secret."""
    base = {"DATABASE_URL": database.url, **s3_server.env(bucket)}

    def run(*args: str, **overrides: str | None) -> Run:
        env = {**base, **overrides}
        result = admin_api(*args, env={name: value for name, value in env.items() if value is not None})
        output = result.stdout + result.stderr
        secrets = {database.password, s3_server.secret_key, env.get("MINIO_SECRET_KEY")}
        if env.get("DATABASE_URL"):
            secrets.add(make_url(env["DATABASE_URL"]).password)
        for secret in secrets - {None, ""}:
            assert secret not in output, "a secret appeared in the output"
        assert "Traceback" not in output, result.stderr
        return result

    return run
