"""Databases of a test's own on the session's PostgreSQL server, owned by a login role of their own (not a
superuser, as in production: the owner is a member of pg_database_owner, which owns `public`), and the
views of them the backup and restore tests compare.

    with private_database(postgres_server) as db:     # superuser=True: owned by postgres instead
        db.psql("INSERT ...")                          # as the database's own user
        db.schema(), db.snapshot()                     # pg_dump --schema-only; every row of the tables
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.engine import make_url

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
