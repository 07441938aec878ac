"""`admin-api restore` puts back exactly the database of the backup, in one transaction: schema, data and
migration head, whatever a newer version changed since (real PostgreSQL 15, real S3)."""

from __future__ import annotations

import hashlib
import io
import subprocess

import pytest
from minio import Minio
from sqlalchemy.engine import make_url

from tests.support.databases import TABLES, Database
from tests.service.backup.test_backup import seed, split
from tests.support.migrations import NEXT, NEXT_REVISION, migrate, next_version
from tests.support.services import PG_BIN

NEXT_TABLES = (*TABLES, "CNVS_TAG")


def download(s3: Minio, location: str) -> bytes:
    bucket, key = split(location)
    response = s3.get_object(bucket, key)
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def schema_of_a_fresh_restore(database: Database, dump: bytes) -> str:
    """The schema plain pg_restore gives the dump in an empty database of the same owner: PostgreSQL prints
    some expressions differently once they went through a dump (CHECK (x IN (...)) for one)."""
    name = f"{database.name}_ref"
    owner = make_url(database.url).username
    database.server.psql(f'CREATE DATABASE "{name}" OWNER "{owner}"')
    try:
        reference = Database(name, database.url.rsplit("/", 1)[0] + f"/{name}", database.server)
        restored = subprocess.run(
            [str(PG_BIN / "pg_restore"), "--no-owner", "--exit-on-error", "--dbname", reference.dsn],
            input=dump,
            capture_output=True,
        )
        assert restored.returncode == 0, restored.stderr
        return reference.schema()
    finally:
        database.server.drop_database(name)


def tables(database: Database) -> set[str]:
    listed = database.psql("SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname <> 'pg_catalog' "
                           "AND schemaname <> 'information_schema'")
    return set(listed.splitlines())


@pytest.mark.parametrize("database", ["owner", "superuser"], indirect=True)
def test_restore_undoes_a_newer_version_exactly(database, cli, s3, tmp_path):
    # An extension the administrator installed (owned by postgres, not by the application's user).
    database.server.psql("CREATE EXTENSION citext", database.name)
    seed(database)
    schema, data = database.schema(), database.snapshot()
    record = cli("backup", "--namespace", "ns", "--instance", "demo").json()
    reference = schema_of_a_fresh_restore(database, download(s3, record["location"]))

    # The next version migrates: a table with a foreign key to USR_CNVS_SMRY, a column, indexes, a type,
    # sequences, a view, a function, an extension, a schema; then it writes rows.
    scripts = next_version(tmp_path, NEXT_REVISION)
    upgraded = migrate(scripts, {"DATABASE_URL": database.url})
    assert upgraded.returncode == 0, upgraded.stderr
    assert database.psql("SELECT version_num FROM alembic_version") == NEXT
    assert int(database.psql('SELECT count(*) FROM "CNVS_TAG"')) == 3 * 4
    database.psql("""INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") VALUES ('new-version-user', 'x')""")

    restore = cli("restore", record["location"])
    assert restore.code == 0, restore.stderr
    assert restore.json()["restored"] == record["location"]

    assert database.schema() == reference
    # ... which is the schema from before, but for PostgreSQL's reprinting of CHECK expressions.
    changed = set(schema.splitlines()) ^ set(reference.splitlines())
    assert changed and all("CHECK (" in line for line in changed), changed
    assert database.snapshot() == data  # including alembic_version: back at 0001
    assert tables(database) == {f"public.{table}" for table in TABLES}
    assert database.psql("SELECT extname FROM pg_extension ORDER BY 1").splitlines() == ["citext", "plpgsql"]
    assert database.psql("SELECT nspname FROM pg_namespace WHERE nspname = 'reporting'") == ""

    # The service goes on from there: its identity columns continue, and the next version migrates again.
    database.psql("""INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") VALUES ('after-restore', 'x')""")
    assert database.psql("""SELECT "USR_ID" FROM "USR_ACCT" WHERE "USR_NM" = 'after-restore'""") == "4"
    again = migrate(scripts, {"DATABASE_URL": database.url})
    assert again.returncode == 0, again.stderr
    assert "Running upgrade 0001 -> 0002" in again.stdout
    assert database.psql("SELECT version_num FROM alembic_version") == NEXT


@pytest.mark.parametrize("damage", ["truncated", "not a dump"])
def test_a_damaged_dump_with_a_matching_checksum_changes_nothing(damage, database, cli, s3, bucket, tmp_path):
    seed(database)
    record = cli("backup", "--namespace", "ns", "--instance", "demo").json()
    upgraded = migrate(next_version(tmp_path, NEXT_REVISION), {"DATABASE_URL": database.url})
    assert upgraded.returncode == 0, upgraded.stderr
    data, schema = database.snapshot(NEXT_TABLES), database.schema()

    # Uploaded as if complete: the checksum is the damaged bytes' own, so only the restore itself can tell.
    dump = download(s3, record["location"])
    damaged = dump[:-64] if damage == "truncated" else b"PGDMP" + bytes(range(256)) * 4
    _, key = split(record["location"])
    metadata = {"namespace": "ns", "instance": "demo", "version": record["version"], "created": record["created"],
                "size": str(len(damaged)), "sha256": hashlib.sha256(damaged).hexdigest()}
    s3.put_object(bucket, key, io.BytesIO(damaged), len(damaged), metadata=metadata)

    result = cli("restore", record["location"])
    assert result.code == 1, result
    assert result.stdout == ""
    assert "pg_restore failed" in result.stderr
    if damage == "truncated":  # read past the table of contents, into the data: the wipe had begun
        assert "end of file" in result.stderr
    assert "the database is" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert database.snapshot(NEXT_TABLES) == data
    assert database.schema() == schema
