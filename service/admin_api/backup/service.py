"""Backup, restore and retention.

A backup is `pg_dump --format=custom` piped straight into a multipart upload (no temporary file), hashed
on the way. The checksum is known only at the end, so it is recorded afterwards by copying the object onto
itself with its full metadata (instance, version, created, sha256). An object without `sha256` is an
interrupted backup: restore refuses it, retention lets it age out.

A restore downloads into a temporary file (in TMPDIR) and checks the sha256 before pg_restore touches the
database; pg_restore then runs in one transaction, so a failure leaves the database as it was.

The database password reaches pg_dump/pg_restore through PGPASSWORD only: never on a command line, never in
output (messages from the tools are scrubbed of it all the same).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url

from admin_api.backup import BackupError, ConfigurationError
from admin_api.backup.storage import BackupStore, location, parse_location
from admin_api.settings import BackupSettings

# pg_dump must match the server's major version; Debian's versioned directory is the fallback.
DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")
INSTANCE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
# Every connection parameter comes from the PG* environment (an empty URI means "all defaults").
FROM_ENVIRONMENT = "--dbname=postgresql://"


@dataclass(frozen=True)
class BackupResult:
    location: str
    size: int
    sha256: str
    instance: str
    version: str
    created: str
    pruned: list[str] = field(default_factory=list)  # locations removed by retention

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RestoreResult:
    restored: str  # the location
    size: int
    sha256: str
    instance: str | None
    version: str | None
    created: str | None
    database: str

    def as_dict(self) -> dict:
        return asdict(self)


def validate_instance(name: str) -> str:
    if not INSTANCE_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid instance name (letters, digits, '.', '-', '_'; no '/')")
    return name


def default_key(instance: str, created: datetime, version: str) -> str:
    version = re.sub(r"[^A-Za-z0-9._-]", "_", version)
    return f"{instance}/{created:%Y%m%dT%H%M%SZ}-{version}.dump"


def open_store(settings: BackupSettings, bucket: str | None = None) -> BackupStore:
    return BackupStore(
        settings.minio_endpoint,
        settings.minio_access_key.get_secret_value(),
        settings.minio_secret_key.get_secret_value(),
        bucket or settings.minio_bucket,
        secure=settings.minio_secure,
    )


def backup(
    settings: BackupSettings, instance: str, *, key: str | None = None, retention: int | None = None
) -> BackupResult:
    validate_instance(instance)
    now = datetime.now(UTC)
    # Microseconds, fixed width: sorts as text, and orders backups taken within the same second.
    created = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    key = key or default_key(instance, now, settings.app_version)
    metadata = {"instance": instance, "version": settings.app_version, "created": created}

    pg_dump = _pg_tool("pg_dump", settings)
    store = open_store(settings)
    store.ensure_bucket()  # fails on an unreachable store or bad credentials before pg_dump starts
    with _PgDump(pg_dump, settings) as dump:
        store.upload(key, dump, metadata)
    store.replace_metadata(key, {**metadata, "sha256": dump.sha256})

    pruned = prune(store, instance, keep=retention) if retention is not None else []
    return BackupResult(
        location(store.bucket, key), dump.size, dump.sha256, instance, settings.app_version, created, pruned
    )


def prune(store: BackupStore, instance: str, *, keep: int) -> list[str]:
    """Keep the newest `keep` backups of `instance` (objects under `<instance>/` that carry its name in
    their metadata); remove the older ones. Anything else in the bucket is left alone."""
    if keep < 1:
        raise ConfigurationError("retention must keep at least one backup")
    backups = [item for item in store.list(f"{instance}/") if item.metadata.get("instance") == instance]
    backups.sort(key=lambda item: (item.metadata.get("created", ""), item.key), reverse=True)
    old = [item.key for item in backups[keep:]]
    store.remove(old)
    return [location(store.bucket, key) for key in old]


def restore(settings: BackupSettings, where: str) -> RestoreResult:
    bucket, key = parse_location(where)
    pg_restore = _pg_tool("pg_restore", settings)
    store = open_store(settings, bucket)
    found = store.stat(key)
    expected = found.metadata.get("sha256")
    if not expected:
        raise BackupError(f"{where} has no sha256 metadata (not a complete admin-api backup): not restored")

    with _temporary_file() as dump:
        digest, size = hashlib.sha256(), 0
        for chunk in store.download(key):
            _write(dump, chunk)
            digest.update(chunk)
            size += len(chunk)
        if digest.hexdigest() != expected:
            raise BackupError(
                f"{where} is corrupted (sha256 {digest.hexdigest()[:12]}..., expected {expected[:12]}...): "
                "not restored, the database is untouched"
            )
        dump.seek(0)
        _run_pg_restore(pg_restore, settings, dump)

    return RestoreResult(
        where,
        size,
        expected,
        found.metadata.get("instance"),
        found.metadata.get("version"),
        found.metadata.get("created"),
        settings.database_name,
    )


def _temporary_file() -> IO[bytes]:
    try:
        return tempfile.TemporaryFile(prefix="admin-api-restore-")
    except OSError as error:
        raise BackupError(f"cannot create a temporary file in {tempfile.gettempdir()} ({error.strerror})") from None


def _write(dump: IO[bytes], chunk: bytes) -> None:
    try:
        dump.write(chunk)
    except OSError as error:  # e.g. TMPDIR too small for the dump
        raise BackupError(f"cannot store the download in {tempfile.gettempdir()} ({error.strerror})") from None


# --- PostgreSQL client tools --------------------------------------------------------------------------


def _pg_tool(name: str, settings: BackupSettings) -> str:
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


def _libpq_environment(settings: BackupSettings) -> dict[str, str]:
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


def _tool_failure(tool: str, stderr: bytes, settings: BackupSettings) -> BackupError:
    """The tool's own error lines, as one line, without the password."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line or "FATAL" in line] or lines[-1:]
    message = " ".join(errors)[:400] or "no message"
    password = make_url(settings.database_url).password
    if password:
        message = message.replace(password, "***")
    return BackupError(f"{tool} failed: {message}")


class _PgDump:
    """pg_dump's output as a readable stream that hashes what passes through. At the end of the output it
    checks pg_dump's exit status and raises if it failed, so the upload is aborted, not completed."""

    def __init__(self, tool: str, settings: BackupSettings) -> None:
        self._settings = settings
        self._stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty pg_dump cannot block on it
        self._process = subprocess.Popen(
            [tool, "--format=custom", "--no-password", FROM_ENVIRONMENT],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_libpq_environment(settings),
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
            raise _tool_failure("pg_dump", self._stderr.read(), self._settings)
        return b""

    def __enter__(self) -> _PgDump:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process.poll() is None:  # the upload failed mid-stream
            self._process.kill()
        self._process.wait()
        self._process.stdout.close()
        self._stderr.close()


def _run_pg_restore(tool: str, settings: BackupSettings, dump: IO[bytes]) -> None:
    result = subprocess.run(
        [
            tool,
            "--clean",
            "--if-exists",
            "--single-transaction",  # all or nothing (and stops at the first error)
            "--no-owner",
            "--no-password",
            FROM_ENVIRONMENT,
        ],
        stdin=dump,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_libpq_environment(settings),
    )
    if result.returncode != 0:
        raise _tool_failure("pg_restore", result.stderr, settings)
