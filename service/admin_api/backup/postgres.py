"""The PostgreSQL side of backups: pg_dump as a stream, and a restore that replaces the whole database in
one transaction.

`pg_restore --clean` drops only what is in the dump: whatever a newer version added (a table with a foreign
key to a restored one, a column, an index, a type) either makes it fail or stays behind. So the restore is
one psql session that runs, in a single transaction:

    BEGIN; the migrations' advisory lock; WIPE (everything of the application's in the database);
    pg_restore's SQL for the dump (plain, streamed); COMMIT -- only if pg_restore finished cleanly.

Nothing is committed unless the dump was read to its end and every statement succeeded: a truncated or
corrupt dump, a failing statement or a lost connection leaves the database as it was.

What WIPE removes: every schema the user owns except `public`, with its contents; the extensions the user
owns (created after initdb); and in `public` and in schemas of other owners (which it keeps, with their
owner and privileges), every relation, routine, type and domain that is not part of an extension it keeps.

The database password reaches the tools through PGPASSWORD only: never on a command line, never in output
(the tools' messages are scrubbed of it all the same).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from admin_api.backup import BackupError, ConfigurationError
from admin_api.migrations import ADVISORY_LOCK_KEY
from admin_api.settings import BackupSettings

# The tools must be of the server's major version; Debian's versioned directory is the fallback.
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")
# Every connection parameter comes from the PG* environment (an empty URI means "all defaults").
FROM_ENVIRONMENT = "--dbname=postgresql://"
# How long the restore waits for a lock held by someone else (a client still connected) before giving up.
LOCK_TIMEOUT = "60s"

# Schemas whose contents are wiped but which stay: `public` (owned by pg_database_owner since PostgreSQL 15,
# its privileges set up by the administrator) and the schemas of other owners.
KEPT_SCHEMA = """
    (n.nspname = 'public' OR NOT pg_has_role(n.nspowner, 'USAGE'))
    AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""
KEPT_SCHEMAS_QUERY = f"SELECT n.nspname FROM pg_namespace n WHERE {KEPT_SCHEMA} ORDER BY 1"

WIPE = f"""
DO $wipe$
DECLARE
    statements text[];
    statement text;
BEGIN
    -- Collected first, then run: a DROP ... CASCADE may already have removed later ones (hence IF EXISTS).
    SELECT array_agg(sql ORDER BY step, sql) INTO statements FROM (
        SELECT 1 AS step, format('DROP SCHEMA IF EXISTS %I CASCADE', n.nspname) AS sql
        FROM pg_namespace n
        WHERE pg_has_role(n.nspowner, 'USAGE') AND n.nspname <> 'public'
          AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      UNION ALL
        SELECT 2, format('DROP EXTENSION IF EXISTS %I CASCADE', e.extname)
        FROM pg_extension e
        WHERE pg_has_role(e.extowner, 'USAGE') AND e.oid >= 16384  -- not the built-in ones (plpgsql)
      UNION ALL
        SELECT CASE c.relkind WHEN 'S' THEN 4 ELSE 3 END,
               format('DROP %s IF EXISTS %I.%I CASCADE',
                      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                      n.nspname, c.relname)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {KEPT_SCHEMA} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                                    AND d.objid = c.oid AND d.deptype = 'e')
      UNION ALL
        SELECT 5, format('DROP ROUTINE IF EXISTS %s CASCADE', p.oid::regprocedure)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {KEPT_SCHEMA}
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass
                                                    AND d.objid = p.oid AND d.deptype = 'e')
      UNION ALL
        SELECT 6, format('DROP %s IF EXISTS %I.%I CASCADE',
                         CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, n.nspname, t.typname)
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_class c ON c.oid = t.typrelid
        WHERE {KEPT_SCHEMA} AND t.typtype IN ('c', 'd', 'e', 'r') AND (c.oid IS NULL OR c.relkind = 'c')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass
                                                    AND d.objid = t.oid AND d.deptype = 'e')
    ) AS drops;
    FOREACH statement IN ARRAY coalesce(statements, '{{}}') LOOP
        EXECUTE statement;
    END LOOP;
END
$wipe$;
"""

PROLOGUE = f"""
SET client_min_messages = warning;
BEGIN;
SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';
SET LOCAL statement_timeout = 0;
-- The lock `admin-api migrate` takes: no migration runs half-way through a restore, or on a half-wiped one.
SELECT pg_advisory_xact_lock({ADVISORY_LOCK_KEY});
{WIPE}
"""

_TOC_ENTRY = re.compile(r"^\d+; \d+ \d+ (?P<entry>.+?)\s*$")


def tool(name: str, settings: BackupSettings) -> str:
    if settings.pg_bin:
        candidate = Path(settings.pg_bin) / name
        if not os.access(candidate, os.X_OK):
            raise ConfigurationError(f"{name} not found in PG_BIN ({settings.pg_bin})")
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    if os.access(DEFAULT_PG_BIN / name, os.X_OK):
        return str(DEFAULT_PG_BIN / name)
    raise ConfigurationError(f"{name} not found: install postgresql-client-15 or set PG_BIN")


def libpq_environment(settings: BackupSettings) -> dict[str, str]:
    """DATABASE_URL (SQLAlchemy's postgresql+asyncpg form) as libpq's PG* variables."""
    url = make_url(settings.database_url)
    env = {**os.environ, "PGHOST": url.host or "", "PGDATABASE": url.database or "", "PGCONNECT_TIMEOUT": "10"}
    if url.port:
        env["PGPORT"] = str(url.port)
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = url.password
    ssl = url.query.get("sslmode") or url.query.get("ssl")
    if isinstance(ssl, str):  # asyncpg spells it ssl=require (or true)
        env["PGSSLMODE"] = "require" if ssl.lower() == "true" else ssl
    return env


def tool_failure(tool_name: str, stderr: bytes, settings: BackupSettings) -> BackupError:
    """The tool's own error lines, as one line, without the password."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    errors = [_without_psql_prefix(line) for line in lines if re.search(r"error:|FATAL", line, re.IGNORECASE)]
    message = " ".join(errors or lines[-1:])[:400] or "no message"
    password = make_url(settings.database_url).password
    if password:
        message = message.replace(password, "***")
    return BackupError(f"{tool_name} failed: {message}")


def _without_psql_prefix(line: str) -> str:
    return re.sub(r"^psql:<stdin>:\d+: ", "", line)


class PgDump:
    """pg_dump's output as a readable stream that hashes what passes through. At the end of the output it
    checks pg_dump's exit status and raises if it failed, so the upload is aborted, not completed."""

    def __init__(self, settings: BackupSettings) -> None:
        self._settings = settings
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty pg_dump cannot block on it
        self._process = subprocess.Popen(
            [tool("pg_dump", settings), "--format=custom", "--no-password", FROM_ENVIRONMENT],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=libpq_environment(settings),
        )
        self._hash = hashlib.sha256()
        self.size = 0

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def read(self, size: int = -1) -> bytes:
        data = self._process.stdout.read(size)
        if data:
            self._hash.update(data)
            self.size += len(data)
            return data
        if self._process.wait() != 0:
            self._stderr.seek(0)
            raise tool_failure("pg_dump", self._stderr.read(), self._settings)
        return b""

    def __enter__(self) -> PgDump:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.poll() is None:  # the upload failed mid-stream
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()
        self._stderr.close()


def replace_database(settings: BackupSettings, dump: IO[bytes]) -> None:
    """Make the database exactly the dump's (a pg_dump custom-format file), in one transaction."""
    pg_restore, psql = tool("pg_restore", settings), tool("psql", settings)
    env = libpq_environment(settings)
    toc = _table_of_contents(pg_restore, dump, settings)  # a damaged archive stops here, before any change
    kept = _kept_schemas(psql, env, settings)
    with tempfile.NamedTemporaryFile("w", prefix="admin-api-restore-", suffix=".list") as listing:
        listing.write("".join(line + "\n" for line in toc if not _skipped(line, kept)))
        listing.flush()
        dump.seek(0)
        _restore_in_one_transaction(pg_restore, psql, listing.name, dump, env, settings)


def _table_of_contents(pg_restore: str, dump: IO[bytes], settings: BackupSettings) -> list[str]:
    dump.seek(0)
    result = subprocess.run([pg_restore, "--list"], stdin=dump, capture_output=True, env=libpq_environment(settings))
    if result.returncode != 0:
        failure = tool_failure("pg_restore", result.stderr, settings)
        raise BackupError(f"{failure}; not restored, the database is untouched")
    return result.stdout.decode().splitlines()


def _kept_schemas(psql: str, env: dict[str, str], settings: BackupSettings) -> set[str]:
    result = subprocess.run(
        [psql, "--no-psqlrc", "--no-password", "--tuples-only", "--no-align", "--command", KEPT_SCHEMAS_QUERY,
         FROM_ENVIRONMENT],
        stdin=subprocess.DEVNULL, capture_output=True, env=env,
    )
    if result.returncode != 0:
        raise tool_failure("psql", result.stderr, settings)
    return set(result.stdout.decode().split("\n")) - {""}


def _skipped(line: str, kept_schemas: set[str]) -> bool:
    """TOC entries that cannot apply to the wiped database: CREATE SCHEMA (and its comment) for a schema that
    stays, and extension comments (set by CREATE EXTENSION itself; only the extension's owner may)."""
    match = _TOC_ENTRY.match(line)
    if not match:
        return False  # a comment line of the listing
    entry = match["entry"]
    if entry.startswith("COMMENT - EXTENSION "):
        return True
    return any(
        entry == f"SCHEMA - {schema}" or entry.startswith((f"SCHEMA - {schema} ", f"COMMENT - SCHEMA {schema} "))
        or entry == f"COMMENT - SCHEMA {schema}"
        for schema in kept_schemas
    )


def _restore_in_one_transaction(
    pg_restore: str, psql: str, listing: str, dump: IO[bytes], env: dict[str, str], settings: BackupSettings
) -> None:
    with tempfile.TemporaryFile() as psql_errors, tempfile.TemporaryFile() as restore_errors:
        session = subprocess.Popen(
            [psql, "--no-psqlrc", "--quiet", "--no-password", "--set=ON_ERROR_STOP=1", FROM_ENVIRONMENT],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=psql_errors, env=env,
        )
        script = subprocess.Popen(
            [pg_restore, "--no-owner", f"--use-list={listing}", "--file=-"],
            stdin=dump, stdout=subprocess.PIPE, stderr=restore_errors, env=env,
        )
        session_stopped = False
        try:
            session.stdin.write(PROLOGUE.encode())
            shutil.copyfileobj(script.stdout, session.stdin)
            if script.wait() == 0:
                session.stdin.write(b"COMMIT;\n")  # only now: the whole dump went through
                session.stdin.close()
            else:
                # Cut the connection in the middle of the transaction: the server rolls it back. (Closing
                # psql's input could end a COPY cleanly instead.)
                session.kill()
        except BrokenPipeError:  # psql stopped at an error; its transaction went with it
            session_stopped = True
        finally:
            if script.poll() is None:
                script.kill()
            script.wait()
            script.stdout.close()
            with contextlib.suppress(BrokenPipeError):
                session.stdin.close()
            session.wait()
        if not session_stopped and script.returncode != 0:
            restore_errors.seek(0)
            raise _not_restored(tool_failure("pg_restore", restore_errors.read(), settings))
        if session.returncode != 0:
            psql_errors.seek(0)
            raise _not_restored(tool_failure("psql", psql_errors.read(), settings))


def _not_restored(error: BackupError) -> BackupError:
    return BackupError(f"{error}; nothing was restored, the database is unchanged")
