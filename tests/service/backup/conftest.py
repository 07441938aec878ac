"""Fixtures for `admin-api backup` / `admin-api restore`: the real CLI in a subprocess, a migrated
database of the test's own (a restore rewrites the whole database, so never the session's shared one),
and a bucket of the test's own on the session's S3 server.

The database belongs to a login role of its own, not a superuser, as in production (tests/support/databases.py);
`@pytest.mark.parametrize("database", ["superuser"], indirect=True)` connects as postgres instead.

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

from tests.support.databases import Database, private_database
from tests.support.s3 import S3Server
from tests.support.services import PostgresServer


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        lines = self.stdout.splitlines()
        assert len(lines) == 1, f"expected one JSON line, got {self.stdout!r} (stderr {self.stderr!r})"
        return json.loads(lines[0])


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
