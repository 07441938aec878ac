"""`admin-api backup` and `admin-api restore` against real PostgreSQL 15 and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import hashlib
import io
import re

from admin_api import __version__
from minio import Minio
from sqlalchemy.engine import make_url

from tests.support.databases import Database
from tests.support.services import _free_port


def seed(database: Database, users: int = 3, conversations: int = 4) -> None:
    """Users, conversations and messages, by SQL, as the service would write them."""
    database.psql(
        f"""
        INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH")
            SELECT 'user-' || u, 'hash-' || md5(u::text) FROM generate_series(1, {users}) u;
        INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL")
            SELECT 'cnvs-' || a."USR_ID" || '-' || c, a."USR_ID", 'Title ' || c || ' é ✓'
            FROM "USR_ACCT" a, generate_series(1, {conversations}) c;
        INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN")
            SELECT s."CNVS_IDT_ID" || '-' || r, s."CNVS_IDT_ID", r, 'message from ' || r || E'\\n' || repeat('x', 50)
            FROM "USR_CNVS_SMRY" s, unnest(ARRAY['user', 'assistant']) r;
        """
    )


def sha256_of(s3: Minio, bucket: str, key: str) -> tuple[str, int]:
    response = s3.get_object(bucket, key)
    try:
        data = response.read()
    finally:
        response.close()
        response.release_conn()
    return hashlib.sha256(data).hexdigest(), len(data)


def split(location: str) -> tuple[str, str]:
    bucket, key = location.removeprefix("s3://").split("/", 1)
    return bucket, key


def test_round_trip_restores_the_same_rows(database, cli, s3, bucket):
    seed(database)
    before = database.snapshot()
    assert database.psql('SELECT count(*) FROM "CNVS_MSG"') == str(3 * 4 * 2)

    backup = cli("backup", "--namespace", "ns", "--instance", "demo")
    assert backup.code == 0, backup.stderr
    record = backup.json()

    # Wipe and alter: delete, rename, add.
    database.psql(
        """
        DELETE FROM "CNVS_MSG" WHERE "ROLE_CD" = 'assistant';
        UPDATE "USR_CNVS_SMRY" SET "CNVS_TTL" = 'renamed', "USE_YN" = 'N';
        INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") VALUES ('intruder', 'x');
        """
    )
    assert database.snapshot() != before

    restore = cli("restore", record["location"])
    assert restore.code == 0, restore.stderr
    assert database.snapshot() == before
    restored = restore.json()
    assert restored["restored"] == record["location"]
    assert restored["sha256"] == record["sha256"]
    assert restored["database"] == database.name

    # The service's identity columns go on from where they were, not from 1 again.
    database.psql("""INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") VALUES ('after-restore', 'x')""")
    assert database.psql("""SELECT "USR_ID" FROM "USR_ACCT" WHERE "USR_NM" = 'after-restore'""") == "4"


def test_backup_line_describes_the_object(database, cli, s3, bucket):
    seed(database, users=1)
    result = cli("backup", "--namespace", "ns", "--instance", "demo")
    assert result.code == 0, result.stderr
    record = result.json()

    assert record["location"].startswith(f"s3://{bucket}/")
    found_bucket, key = split(record["location"])
    assert found_bucket == bucket
    assert re.fullmatch(rf"ns/demo/\d{{8}}T\d{{6}}Z-{re.escape(__version__)}\.dump", key), key
    assert record["namespace"] == "ns"
    assert record["instance"] == "demo"
    assert record["version"] == __version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["created"])
    assert record["pruned"] == []

    digest, size = sha256_of(s3, bucket, key)
    assert (record["sha256"], record["size"]) == (digest, size)
    assert s3.stat_object(bucket, key).size == size
    metadata = {name.lower(): value for name, value in s3.stat_object(bucket, key).metadata.items()}
    assert metadata["x-amz-meta-sha256"] == digest
    assert metadata["x-amz-meta-size"] == str(size)
    assert metadata["x-amz-meta-namespace"] == "ns"
    assert metadata["x-amz-meta-instance"] == "demo"
    assert metadata["x-amz-meta-version"] == __version__
    assert metadata["x-amz-meta-created"] == record["created"]
    with open_dump(s3, bucket, key) as head:
        assert head.read(5) == b"PGDMP"  # pg_dump's custom format


def open_dump(s3: Minio, bucket: str, key: str) -> io.BytesIO:
    response = s3.get_object(bucket, key, offset=0, length=16)
    try:
        return io.BytesIO(response.read())
    finally:
        response.close()
        response.release_conn()


def test_large_dump_streams_in_parts_and_round_trips(database, cli, s3, bucket):
    # ~24 MiB of incompressible rows: more than one 16 MiB part of the multipart upload.
    database.psql(
        """
        CREATE TABLE blobs (id int PRIMARY KEY, data bytea NOT NULL);
        INSERT INTO blobs
            SELECT g, (SELECT decode(string_agg(md5(random()::text || g || i), ''), 'hex')
                       FROM generate_series(1, 64) i)
            FROM generate_series(1, 24 * 1024) g;
        """
    )
    checksum = database.psql("SELECT md5(string_agg(md5(data), '' ORDER BY id)) FROM blobs")

    result = cli("backup", "--namespace", "ns", "--instance", "big", "--key", "ns/big/large.dump")
    assert result.code == 0, result.stderr
    record = result.json()
    assert record["size"] > 20 * 1024 * 1024
    assert sha256_of(s3, bucket, "ns/big/large.dump") == (record["sha256"], record["size"])

    database.psql("TRUNCATE blobs")
    restore = cli("restore", record["location"])
    assert restore.code == 0, restore.stderr
    assert database.psql("SELECT md5(string_agg(md5(data), '' ORDER BY id)) FROM blobs") == checksum


def test_retention_keeps_the_newest_n_complete_backups_of_that_instance_only(database, cli, s3, bucket):
    locations = []
    for number in range(1, 4):
        result = cli("backup", "--namespace", "ns", "--instance", "alpha", "--key", f"ns/alpha/{number}.dump")
        assert result.code == 0, result.stderr
        locations.append(result.json()["location"])
    # Same name, another namespace sharing the bucket; a name sharing the prefix "alpha"; a namespace named
    # like the instance: none of them is ns/alpha's.
    others = [
        cli("backup", "--namespace", "other", "--instance", "alpha").json()["location"],
        cli("backup", "--namespace", "ns", "--instance", "alphabet").json()["location"],
        cli("backup", "--namespace", "alpha", "--instance", "ns").json()["location"],
    ]
    # Not complete backups of ns/alpha, though under its prefix: a foreign file, an upload whose checksum was
    # never recorded (interrupted), one whose recorded size is not its size, one claiming another instance.
    s3.put_object(bucket, "ns/alpha/README.txt", io.BytesIO(b"notes"), 5)
    s3.put_object(bucket, "ns/alpha/partial.dump", io.BytesIO(b"PGDMP"), 5,
                  metadata={"namespace": "ns", "instance": "alpha", "created": "2000-01-01T00:00:00.000000Z"})
    s3.put_object(bucket, "ns/alpha/short.dump", io.BytesIO(b"PGDMP"), 5,
                  metadata={"namespace": "ns", "instance": "alpha", "created": "2000-01-01T00:00:00.000000Z",
                            "size": "999", "sha256": hashlib.sha256(b"PGDMP").hexdigest()})
    s3.put_object(bucket, "ns/alpha/cousin.dump", io.BytesIO(b"PGDMP"), 5,
                  metadata={"namespace": "ns", "instance": "alphabet", "created": "2000-01-01T00:00:00.000000Z",
                            "size": "5", "sha256": hashlib.sha256(b"PGDMP").hexdigest()})

    result = cli("backup", "--namespace", "ns", "--instance", "alpha", "--key", "ns/alpha/0-newest.dump",
                 "--retention", "2")
    assert result.code == 0, result.stderr
    record = result.json()
    # Ordered by creation time, not by name: "0-newest" sorts first yet is the newest.
    assert record["pruned"] == [locations[1], locations[0]]

    keys = sorted(item.object_name for item in s3.list_objects(bucket, recursive=True))
    assert keys == sorted(
        ["ns/alpha/0-newest.dump", "ns/alpha/3.dump", "ns/alpha/README.txt", "ns/alpha/partial.dump",
         "ns/alpha/short.dump", "ns/alpha/cousin.dump", *(split(other)[1] for other in others)]
    )

    # Retention elsewhere leaves ns/alpha alone too.
    result = cli("backup", "--namespace", "other", "--instance", "alpha", "--retention", "1")
    assert result.code == 0, result.stderr
    assert result.json()["pruned"] == [others[0]]
    assert {"ns/alpha/0-newest.dump", "ns/alpha/3.dump"} <= {
        item.object_name for item in s3.list_objects(bucket, recursive=True)
    }


def test_a_key_outside_the_instance_is_refused(cli, s3, bucket):
    for key in ("other/alpha/x.dump", "ns/alphabet/x.dump", "alpha/x.dump", "ns/alpha/", "ns/alpha"):
        result = cli("backup", "--namespace", "ns", "--instance", "alpha", "--key", key)
        assert result.code == 2, (key, result)
        assert "--key must name an object under ns/alpha/" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_the_namespace_is_required(cli):
    result = cli("backup", "--instance", "demo")
    assert result.code == 2
    assert "--namespace" in result.stderr


def test_a_corrupted_backup_is_refused_and_the_database_left_alone(database, cli, s3, bucket):
    seed(database)
    record = cli("backup", "--namespace", "ns", "--instance", "demo").json()
    _, key = split(record["location"])

    # Flip one byte in the middle, keeping the object's metadata (and so its recorded sha256).
    stat = s3.stat_object(bucket, key)
    response = s3.get_object(bucket, key)
    data = bytearray(response.read())
    response.close()
    response.release_conn()
    data[len(data) // 2] ^= 0xFF
    metadata = {
        name[len("x-amz-meta-") :]: value
        for name, value in stat.metadata.items()
        if name.lower().startswith("x-amz-meta-")
    }
    s3.put_object(bucket, key, io.BytesIO(bytes(data)), len(data), metadata=metadata)

    database.psql("""UPDATE "USR_CNVS_SMRY" SET "CNVS_TTL" = 'changed after the backup'""")
    changed = database.snapshot()

    result = cli("restore", record["location"])
    assert result.code == 1
    assert result.stdout == ""
    assert "corrupted" in result.stderr and "not restored" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert database.snapshot() == changed


def test_a_restore_that_fails_midway_changes_nothing(database, cli):
    seed(database)
    record = cli("backup", "--namespace", "ns", "--instance", "demo").json()
    # Made after the backup by another role (say, the DBA), in a schema of its own: the application's user
    # may not drop it, so the restore fails after it has begun to wipe the database. (In `public` it could:
    # that schema is the database owner's.)
    owner = make_url(database.url).username
    database.server.psql(
        f"""CREATE SCHEMA dba;
            CREATE TABLE dba.notes (note text);
            GRANT USAGE ON SCHEMA dba TO "{owner}";
            GRANT SELECT ON dba.notes TO "{owner}" """,
        database.name,
    )
    database.psql("""DELETE FROM "CNVS_MSG" WHERE "ROLE_CD" = 'user'""")
    changed, schema = database.snapshot(), database.schema()

    result = cli("restore", record["location"])
    assert result.code == 1
    assert result.stdout == ""
    assert "must be owner of table notes" in result.stderr
    assert "nothing was restored, the database is unchanged" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert database.snapshot() == changed  # one transaction: all or nothing
    assert database.schema() == schema


def test_a_backup_without_a_checksum_is_refused(database, cli, s3, bucket):
    s3.make_bucket(bucket)
    s3.put_object(bucket, "demo/foreign.dump", io.BytesIO(b"PGDMP..."), 8)
    result = cli("restore", f"s3://{bucket}/demo/foreign.dump")
    assert result.code == 1
    assert "no sha256" in result.stderr


def test_restore_of_a_missing_object_says_so(database, cli, bucket, s3):
    s3.make_bucket(bucket)
    result = cli("restore", f"s3://{bucket}/demo/nothing.dump")
    assert result.code == 1
    assert f"no object at s3://{bucket}/demo/nothing.dump" in result.stderr


def test_unreachable_object_storage_fails_cleanly(database, cli):
    endpoint = f"127.0.0.1:{_free_port()}"  # nothing listens there
    for args in (("backup", "--namespace", "ns", "--instance", "demo"), ("restore", "s3://somewhere/demo/x.dump")):
        result = cli(*args, MINIO_ENDPOINT=endpoint)
        assert result.code == 1, result
        assert result.stdout == ""
        assert f"cannot reach object storage at {endpoint}" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_bad_credentials_fail_cleanly(database, cli, s3_server):
    wrong = "not-the-secret-" + s3_server.secret_key[:4]
    result = cli("backup", "--namespace", "ns", "--instance", "demo", MINIO_SECRET_KEY=wrong)
    assert result.code == 1
    assert "rejected the credentials" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pg_dump_failure_is_one_line_without_the_password_and_uploads_nothing(database, cli, s3, bucket):
    wrong = database.url.replace(database.password, "wrong-password-" + database.password[:6])
    result = cli("backup", "--namespace", "ns", "--instance", "demo", DATABASE_URL=wrong)
    assert result.code == 1
    assert "pg_dump failed" in result.stderr and "password authentication failed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert list(s3.list_objects(bucket, recursive=True)) == []  # nothing half-written

    unreachable = re.sub(r":\d+/", f":{_free_port()}/", database.url)
    result = cli("backup", "--namespace", "ns", "--instance", "demo", DATABASE_URL=unreachable)
    assert result.code == 1
    assert "pg_dump failed" in result.stderr


def test_missing_settings_are_named(cli):
    result = cli("backup", "--namespace", "ns", "--instance", "demo", MINIO_ENDPOINT=None)
    assert result.code == 2
    assert "MINIO_ENDPOINT: required environment variable is not set" in result.stderr

    result = cli("restore", "s3://b/k", DATABASE_URL=None)
    assert result.code == 2
    assert "DATABASE_URL" in result.stderr

    result = cli("backup", "--namespace", "ns", "--instance", "demo", PG_BIN="/nonexistent/bin")
    assert result.code == 2
    assert "pg_dump not found in PG_BIN" in result.stderr


def test_bad_usage_exits_2(cli):
    assert cli("backup", "--namespace", "ns", "--instance", "a/b").code == 2
    assert cli("backup", "--namespace", "ns", "--instance", "demo", "--retention", "0").code == 2
    assert cli("restore", "/tmp/x.dump").code == 2
