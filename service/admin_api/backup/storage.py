"""The backups' object storage, through the S3 API (the `minio` client: sync, fine for a CLI).

Every failure leaves here as a `StorageError` with one line that names what went wrong and never a key.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error

from admin_api.backup import BackupError

# Parts of an upload of unknown length: bounds memory (a few parts in flight) and allows dumps of up
# to 10,000 parts (160 GiB).
PART_SIZE = 16 * 1024 * 1024
READ_CHUNK = 1024 * 1024
META_PREFIX = "x-amz-meta-"

_LOCATION = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>.+)$")
_CREDENTIAL_ERRORS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken"}


class StorageError(BackupError):
    """Object storage failed; the message is one line for the operator."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime | None
    metadata: dict[str, str]


def location(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_location(value: str) -> tuple[str, str]:
    match = _LOCATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an s3://BUCKET/KEY location")
    return match["bucket"], match["key"]


class BackupStore:
    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        # Fewer, shorter retries than the client's default: an unreachable endpoint should fail in
        # seconds with a clear message, not after minutes.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10, read=300),
            retries=urllib3.Retry(total=2, backoff_factor=0.5, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http)

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        what = location(self.bucket, key) if key else f"bucket {self.bucket!r}"
        try:
            yield
        except S3Error as error:
            if error.code in _CREDENTIAL_ERRORS:
                raise StorageError(
                    f"{action}: object storage at {self.endpoint} rejected the credentials "
                    f"(MINIO_ACCESS_KEY/MINIO_SECRET_KEY): {error.code}"
                ) from None
            if error.code in {"NoSuchKey", "NoSuchObject"}:
                raise StorageError(f"{action}: no object at {what}") from None
            if error.code == "NoSuchBucket":
                raise StorageError(f"{action}: bucket {self.bucket!r} does not exist") from None
            raise StorageError(f"{action}: object storage refused ({error.code}) for {what}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise StorageError(f"{action}: cannot reach object storage at {self.endpoint} ({_cause(error)})") from None
        except MinioException as error:  # e.g. a non-S3 answer from whatever listens there
            raise StorageError(f"{action}: unexpected answer from {self.endpoint} ({type(error).__name__})") from None

    def ensure_bucket(self) -> None:
        with self._errors("checking the bucket"):
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as error:
                    if error.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise  # (a lost race with another backup is fine)

    def upload(self, key: str, stream: BinaryIO, metadata: Mapping[str, str]) -> None:
        """Upload a stream of unknown length as a multipart upload. If reading the stream raises, the
        client aborts the upload and no object appears; the stream's own exception propagates."""
        with self._errors("uploading", key):
            self._client.put_object(self.bucket, key, stream, length=-1, part_size=PART_SIZE, metadata=dict(metadata))

    def replace_metadata(self, key: str, metadata: Mapping[str, str]) -> None:
        """Set an object's user metadata, by copying it onto itself (S3 metadata is immutable otherwise)."""
        with self._errors("recording the checksum", key):
            self._client.copy_object(
                self.bucket, key, CopySource(self.bucket, key), metadata=dict(metadata), metadata_directive=REPLACE
            )

    def stat(self, key: str) -> StoredObject:
        with self._errors("reading the backup's metadata", key):
            stat = self._client.stat_object(self.bucket, key)
        return StoredObject(key, stat.size or 0, stat.last_modified, _user_metadata(stat.metadata or {}))

    def download(self, key: str) -> Iterator[bytes]:
        """Yield the object's bytes in chunks (streamed, never whole in memory)."""
        with self._errors("downloading", key):
            response = self._client.get_object(self.bucket, key)
            try:
                yield from response.stream(READ_CHUNK)
            finally:
                response.close()
                response.release_conn()

    def list(self, prefix: str) -> list[StoredObject]:
        with self._errors("listing backups"):
            found = list(self._client.list_objects(self.bucket, prefix=prefix, recursive=True))
        return [self.stat(item.object_name) for item in found if not item.is_dir]

    def remove(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._errors("removing old backups"):
            errors = list(self._client.remove_objects(self.bucket, [DeleteObject(key) for key in keys]))
        if errors:
            raise StorageError(f"removing old backups: {len(errors)} could not be removed ({errors[0].code})")


def _user_metadata(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name.lower().removeprefix(META_PREFIX): value
        for name, value in headers.items()
        if name.lower().startswith(META_PREFIX)
    }


def _cause(error: BaseException) -> str:
    """The innermost cause, e.g. "connection refused" out of urllib3's MaxRetryError(NewConnectionError(...))."""
    while True:
        reason = getattr(error, "reason", None)
        inner = reason if isinstance(reason, BaseException) else (error.__cause__ or error.__context__)
        if inner is None:
            break
        error = inner
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return type(error).__name__
