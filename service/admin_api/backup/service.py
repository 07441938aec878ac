"""Backup, restore and retention.

A backup is `pg_dump --format=custom` piped straight into a multipart upload (no temporary file), hashed
on the way. The object is then read back and hashed again; only if both agree is it marked complete, by
copying it onto itself with its full metadata (namespace, instance, version, created, size, sha256). An
object without that mark is an interrupted or unverified backup: restore refuses it and retention neither
counts it as kept nor removes it.

Keys are `NAMESPACE/INSTANCE/...`: instances of the same name in two namespaces, or whose names share a
prefix (`a` and `ab`), never see each other's backups, even in a shared bucket.

A restore downloads into a temporary file (in TMPDIR), checks the sha256 before anything touches the
database, and then replaces the whole database in one transaction (postgres.replace_database).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO

from admin_api.backup import BackupError, ConfigurationError
from admin_api.backup.postgres import PgDump, replace_database
from admin_api.backup.storage import BackupStore, StoredObject, location, parse_location
from admin_api.settings import BackupSettings

INSTANCE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")
NAMESPACE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # a Kubernetes namespace (DNS label)


@dataclass(frozen=True)
class BackupResult:
    location: str
    size: int
    sha256: str
    namespace: str
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
    namespace: str | None
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


def validate_namespace(name: str) -> str:
    if not NAMESPACE_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid namespace name (a DNS label: a-z, 0-9, '-', at most 63)")
    return name


def instance_prefix(namespace: str, instance: str) -> str:
    return f"{namespace}/{instance}/"


def default_key(namespace: str, instance: str, created: datetime, version: str) -> str:
    version = re.sub(r"[^A-Za-z0-9._-]", "_", version)
    return f"{instance_prefix(namespace, instance)}{created:%Y%m%dT%H%M%SZ}-{version}.dump"


def validate_key(key: str, namespace: str, instance: str) -> str:
    """A key of the instance's own: under NAMESPACE/INSTANCE/, where retention looks."""
    prefix = instance_prefix(namespace, instance)
    rest = key.removeprefix(prefix)
    if rest == key or not rest or rest.endswith("/") or "//" in rest:
        raise ValueError(f"--key must name an object under {prefix} (got {key!r})")
    return key


def open_store(settings: BackupSettings, bucket: str | None = None) -> BackupStore:
    return BackupStore(
        settings.minio_endpoint,
        settings.minio_access_key.get_secret_value(),
        settings.minio_secret_key.get_secret_value(),
        bucket or settings.minio_bucket,
        secure=settings.minio_secure,
    )


def backup(
    settings: BackupSettings,
    namespace: str,
    instance: str,
    *,
    key: str | None = None,
    retention: int | None = None,
) -> BackupResult:
    now = datetime.now(UTC)
    try:
        validate_namespace(namespace)
        validate_instance(instance)
        if key:
            validate_key(key, namespace, instance)
        else:
            key = default_key(namespace, instance, now, settings.app_version)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    if retention is not None and retention < 1:
        raise ConfigurationError("retention must keep at least one backup")
    # Microseconds, fixed width: sorts as text, and orders backups taken within the same second.
    created = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    metadata = {"namespace": namespace, "instance": instance, "version": settings.app_version, "created": created}

    store = open_store(settings)
    store.ensure_bucket()  # fails on an unreachable store or bad credentials before pg_dump starts
    with PgDump(settings) as dump:
        store.upload(key, dump, metadata)
    _verify_upload(store, key, dump.sha256, dump.size)
    store.replace_metadata(key, {**metadata, "size": str(dump.size), "sha256": dump.sha256})

    pruned = prune(store, namespace, instance, keep=retention) if retention is not None else []
    return BackupResult(
        location(store.bucket, key), dump.size, dump.sha256, namespace, instance, settings.app_version, created, pruned
    )


def _verify_upload(store: BackupStore, key: str, sha256: str, size: int) -> None:
    """Read the object back: only what the store really holds is marked complete."""
    digest, stored = hashlib.sha256(), 0
    for chunk in store.download(key):
        digest.update(chunk)
        stored += len(chunk)
    if (digest.hexdigest(), stored) != (sha256, size):
        store.remove([key])
        raise BackupError(
            f"{location(store.bucket, key)} read back differs from what pg_dump wrote "
            f"({stored} bytes, expected {size}): removed, no backup was made"
        )


def is_complete_backup_of(item: StoredObject, namespace: str, instance: str) -> bool:
    """A verified dump of this very instance: its own metadata says so, and the size it recorded is the size."""
    meta = item.metadata
    return (
        meta.get("namespace") == namespace
        and meta.get("instance") == instance
        and bool(meta.get("sha256"))
        and meta.get("size") == str(item.size)
    )


def prune(store: BackupStore, namespace: str, instance: str, *, keep: int) -> list[str]:
    """Keep the newest `keep` complete backups of the instance; remove its older complete ones. Anything else
    in the bucket (other instances, other namespaces, unverified uploads, foreign files) is left alone."""
    if keep < 1:
        raise ConfigurationError("retention must keep at least one backup")
    backups = [
        item
        for item in store.list(instance_prefix(namespace, instance))
        if is_complete_backup_of(item, namespace, instance)
    ]
    backups.sort(key=lambda item: (item.metadata.get("created", ""), item.key), reverse=True)
    old = [item.key for item in backups[keep:]]
    store.remove(old)
    return [location(store.bucket, key) for key in old]


def restore(settings: BackupSettings, where: str) -> RestoreResult:
    bucket, key = parse_location(where)
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
        _flush(dump)
        if digest.hexdigest() != expected:
            raise BackupError(
                f"{where} is corrupted (sha256 {digest.hexdigest()[:12]}..., expected {expected[:12]}...): "
                "not restored, the database is untouched"
            )
        replace_database(settings, dump)

    meta = found.metadata
    return RestoreResult(
        where,
        size,
        expected,
        meta.get("namespace"),
        meta.get("instance"),
        meta.get("version"),
        meta.get("created"),
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


def _flush(dump: IO[bytes]) -> None:
    try:
        dump.flush()
    except OSError as error:
        raise BackupError(f"cannot store the download in {tempfile.gettempdir()} ({error.strerror})") from None
