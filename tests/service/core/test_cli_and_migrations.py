"""`admin-api migrate` and `admin-api create-user`, run as the real console command (`serve`: test_serve.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import asyncpg
import pytest
from admin_api.main import create_app

from tests.service.conftest import client_for
from tests.support.databases import private_database
from tests.support.migrations import HEAD, NEXT, NEXT_REVISION, migrate, next_version, python_env

# The deployment guide's expected USR_CNVS_SMRY indexes, by name.
GUIDE_INDEXES = {
    "USR_CNVS_SMRY_pkey",
    "USR_CNVS_SMRY_CNVS_IDT_ID_key",
    "idx_usr_cnvs_smry_cnvs_idt_id",
    "idx_usr_cnvs_smry_use_yn",
    "idx_usr_cnvs_smry_usr_id_reg_dt",
}


def admin_api(*args: str, database_url: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "admin_api.cli", *args],
        env={**python_env(), "DATABASE_URL": database_url, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_admin_api(*args: str, database_url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "admin_api.cli", *args],
        env={**python_env(), "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def empty_database(postgres_server):
    name = f"test_migrate_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(name)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


async def _fetch(url: str, sql: str, *args):
    conn = await asyncpg.connect(url.replace("+asyncpg", "", 1))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_migrate_creates_the_schema_and_is_idempotent(empty_database):
    first = await asyncio.to_thread(admin_api, "migrate", database_url=empty_database)
    assert first.returncode == 0, first.stderr
    assert "Running upgrade  -> 0001" in first.stdout and "Running upgrade 0001 -> 0002" in first.stdout
    second = await asyncio.to_thread(admin_api, "migrate", database_url=empty_database)
    assert second.returncode == 0, second.stderr
    assert "Running upgrade" not in second.stdout

    tables = {
        r["tablename"]
        for r in await _fetch(empty_database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert tables == {"USR_ACCT", "USR_CNVS_SMRY", "CNVS_MSG", "USR_DOC", "alembic_version"}
    assert [r["version_num"] for r in await _fetch(empty_database, "SELECT version_num FROM alembic_version")] == [
        "0002"
    ]


async def test_the_guide_indexes_exist_by_name(database_url):
    rows = await _fetch(database_url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'USR_CNVS_SMRY'")
    definitions = {r["indexname"]: r["indexdef"] for r in rows}
    assert set(definitions) >= GUIDE_INDEXES
    assert set(definitions) - GUIDE_INDEXES == {"idx_usr_cnvs_smry_page"}
    assert '("USR_ID", "REG_DT" DESC)' in definitions["idx_usr_cnvs_smry_usr_id_reg_dt"]  # composite
    assert "UNIQUE" in definitions["USR_CNVS_SMRY_CNVS_IDT_ID_key"]


async def test_two_replicas_migrating_at_once_both_succeed(empty_database):
    def race() -> list[tuple[int, str, str]]:
        processes = [start_admin_api("migrate", database_url=empty_database) for _ in range(2)]
        return [(p.wait(timeout=120), *p.communicate()) for p in processes]

    results = await asyncio.to_thread(race)
    assert [code for code, _, _ in results] == [0, 0], results
    # Exactly one of them applied the migration; the other waited on the lock and found nothing to do.
    assert sum("Running upgrade  -> 0001" in out for _, out, _ in results) == 1
    assert len(await _fetch(empty_database, "SELECT 1 FROM alembic_version")) == 1


async def test_migrate_creates_the_bootstrap_admin_once(empty_database, make_settings, login):
    env = {"BOOTSTRAP_ADMIN_USERNAME": "root-admin", "BOOTSTRAP_ADMIN_PASSWORD": "first-password-1"}
    created = await asyncio.to_thread(admin_api, "migrate", database_url=empty_database, **env)
    assert created.returncode == 0, created.stderr
    assert "first-password-1" not in created.stdout + created.stderr
    rows = await _fetch(empty_database, 'SELECT "ADMIN_YN", "PWD_HASH" FROM "USR_ACCT" WHERE "USR_NM" = \'root-admin\'')
    assert rows[0]["ADMIN_YN"] == "Y"

    env["BOOTSTRAP_ADMIN_PASSWORD"] = "second-password-2"
    again = await asyncio.to_thread(admin_api, "migrate", database_url=empty_database, **env)
    assert again.returncode == 0, again.stderr
    rows_after = await _fetch(empty_database, 'SELECT "PWD_HASH" FROM "USR_ACCT" WHERE "USR_NM" = \'root-admin\'')
    assert rows_after[0]["PWD_HASH"] == rows[0]["PWD_HASH"]  # an existing user is never overwritten

    app = create_app(make_settings(database_url=empty_database))
    async with app.router.lifespan_context(app), client_for(app) as http:
        response = await login(http, "root-admin", "first-password-1")
        assert response.json()["is_admin"] is True


async def test_half_a_bootstrap_admin_is_a_configuration_error(empty_database):
    result = await asyncio.to_thread(admin_api, "migrate", database_url=empty_database, BOOTSTRAP_ADMIN_USERNAME="x")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "admin-api: configuration error: BOOTSTRAP_ADMIN_PASSWORD: required when the other BOOTSTRAP_ADMIN_* is set"
    )


async def test_migrate_without_a_database_fails_in_one_line(postgres_server):
    url = "postgresql+asyncpg://postgres:hunter2-pw@127.0.0.1:1/admin_db"
    result = await asyncio.to_thread(admin_api, "migrate", database_url=url)
    assert result.returncode == 1
    assert (
        result.stderr.strip().splitlines()[-1]
        == "admin-api: migrate failed, nothing was applied: cannot reach the database (ConnectionRefusedError)"
    )
    assert "hunter2-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


async def test_create_user_then_log_in(database_url, app, client, login, db):
    username = f"cli-{uuid.uuid4().hex[:8]}"
    password = "correct horse battery staple"
    result = await asyncio.to_thread(
        admin_api,
        "create-user",
        username,
        "--admin",
        "--password-stdin",
        database_url=database_url,
        stdin=password + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"created admin user '{username}' (id ")
    assert password not in result.stdout + result.stderr

    stored = await db.fetchval('SELECT "PWD_HASH" FROM "USR_ACCT" WHERE "USR_NM" = $1', username)
    assert stored.startswith("$argon2id$")
    response = await login(client, username, password)
    assert response.json()["is_admin"] is True


async def test_create_user_refuses_an_existing_user(database_url, make_user):
    user = await make_user()
    result = await asyncio.to_thread(
        admin_api,
        "create-user",
        user.username,
        "--password-stdin",
        database_url=database_url,
        stdin="another-password\n",
    )
    assert result.returncode == 1
    assert result.stderr == f"admin-api: user '{user.username}' already exists\n"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["create-user", "bob", "--password-stdin"], "short\n", "password must be 8 to 1024 characters"),
        (["create-user", "bad name!", "--password-stdin"], "long-enough-pw\n", "username must be"),
    ],
)
async def test_create_user_validates(database_url, args, stdin, message):
    result = await asyncio.to_thread(admin_api, *args, database_url=database_url, stdin=stdin)
    assert result.returncode == 1
    assert message in result.stderr
    assert stdin.strip() not in result.stderr


async def test_create_user_requires_password_stdin(database_url):
    result = await asyncio.to_thread(admin_api, "create-user", "bob", database_url=database_url)
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr



BROKEN_REVISION = """
from alembic import op

revision = "next2"
down_revision = "next1"


def upgrade() -> None:
    op.execute('CREATE TABLE "HALF_DONE" (id int)')
    op.execute('INSERT INTO "USR_ACCT_TYPO" ("USR_NM") VALUES (\\'x\\')')
"""


async def _public_tables(url: str) -> set[str]:
    rows = await _fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def test_a_failing_migration_changes_nothing(empty_database, tmp_path):
    # All pending at once (the package's, a good next1, a broken next2): one transaction, so none of them stays.
    scripts = next_version(tmp_path, NEXT_REVISION, BROKEN_REVISION)
    env = {"DATABASE_URL": empty_database}
    result = await asyncio.to_thread(migrate, scripts, env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        'admin-api: migrate failed, nothing was applied: UndefinedTableError: relation "USR_ACCT_TYPO" does not exist'
    ]
    assert await _public_tables(empty_database) == set()

    # From the current head, the same: next1 does not stay without next2.
    assert (await asyncio.to_thread(admin_api, "migrate", database_url=empty_database)).returncode == 0
    result = await asyncio.to_thread(migrate, scripts, env)
    assert result.returncode == 1
    assert await _public_tables(empty_database) == {"USR_ACCT", "USR_CNVS_SMRY", "CNVS_MSG", "USR_DOC",
                                                     "alembic_version"}
    assert [r["version_num"] for r in await _fetch(empty_database, "SELECT version_num FROM alembic_version")] == [
        HEAD
    ]
    columns = await _fetch(empty_database, "SELECT 1 FROM information_schema.columns WHERE column_name = 'PINNED_YN'")
    assert columns == []

    # Fixed, the next version applies.
    (scripts / "versions" / "9002_next.py").unlink()
    result = await asyncio.to_thread(migrate, scripts, env)
    assert result.returncode == 0, result.stderr
    assert f"Running upgrade {HEAD} -> next1" in result.stdout


async def test_a_database_ahead_of_this_version_is_left_as_it_is(postgres_server, tmp_path, make_settings, login):
    # A rollback without restoring the database: the newer version migrated it, then this version's pods start
    # again and their init container runs `admin-api migrate`, which must neither fail nor touch the schema.
    with private_database(postgres_server) as database:
        newer = await asyncio.to_thread(migrate, next_version(tmp_path, NEXT_REVISION), {"DATABASE_URL": database.url})
        assert newer.returncode == 0, newer.stderr
        schema = await asyncio.to_thread(database.schema)

        env = {"BOOTSTRAP_ADMIN_USERNAME": "root-admin", "BOOTSTRAP_ADMIN_PASSWORD": "first-password-1"}
        result = await asyncio.to_thread(admin_api, "migrate", database_url=database.url, **env)
        assert result.returncode == 0, result.stderr
        assert f"database is at revision {NEXT}, newer than this version knows (head {HEAD}): left as it is" in (
            result.stdout.splitlines()
        ), result.stdout
        assert "Running upgrade" not in result.stdout
        assert await asyncio.to_thread(database.schema) == schema
        assert database.psql("SELECT version_num FROM alembic_version") == NEXT

        # And this version serves on it: startup, readiness, history (a conversation the newer version tagged).
        app = create_app(make_settings(database_url=database.url))
        async with app.router.lifespan_context(app), client_for(app) as http:
            await login(http, "root-admin", "first-password-1")
            database.psql(
                'INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL") '
                "SELECT 'after-rollback', \"USR_ID\", 'Kept' FROM \"USR_ACCT\" WHERE \"USR_NM\" = 'root-admin'"
            )
            database.psql('INSERT INTO "CNVS_TAG" ("CNVS_IDT_ID", "TAG_NM") VALUES (\'after-rollback\', \'new\')')
            for path in ("/health/ready", "/health/db"):
                response = await http.get(path)
                assert response.status_code == 200, (path, response.text)
            listed = await http.post("/api/v1/history/list", json={})
            assert listed.status_code == 200, listed.text
            assert [item["title"] for item in listed.json()["items"]] == ["Kept"]
            detail = await http.post("/api/v1/history/detail", json={"cnvs_idt_id": "after-rollback"})
            assert detail.status_code == 200, detail.text
