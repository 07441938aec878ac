"""The originals in object storage, under a prefix per user: `documents/<user id>/<document id>`.

The `minio` SDK is synchronous: every call runs in a worker thread, at most STORAGE_CONCURRENCY at a
time, so the event loop never waits on the network and a burst of uploads cannot take every thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO, TypeVar

import anyio
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_CHUNK = 256 * 1024
PART_SIZE = 16 * 1024 * 1024


class OriginalMissing(Exception):
    """The document's original is not in the bucket (removed behind our back, or another bucket configured)."""


class StorageUnavailable(Exception):
    """Object storage could not be used; answered 503 (the words never name the endpoint or a key)."""


def object_key(user_id: int, doc_idt_id: str) -> str:
    return f"documents/{user_id}/{doc_idt_id}"


class DocumentStore:
    def __init__(
        self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool, concurrency: int
    ) -> None:
        self.bucket = bucket
        # Short timeouts and few retries: a request should fail in seconds when storage is down.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5, read=60),
            maxsize=concurrency,
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, http_client=http)
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._bucket_ready = False

    async def _run(self, action: str, call: Callable[[], T]) -> T:
        try:
            return await anyio.to_thread.run_sync(call, limiter=self._limiter)
        except (S3Error, MinioException, urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("object storage failed", extra={"action": action, "error_type": type(error).__name__})
            raise StorageUnavailable() from None

    async def ensure_bucket(self) -> None:
        if self._bucket_ready:
            return

        def create() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as error:  # another replica made it first
                    if error.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise

        await self._run("creating the bucket", create)
        self._bucket_ready = True

    async def put(self, key: str, stream: BinaryIO, length: int, content_type: str) -> None:
        await self.ensure_bucket()
        await self._run(
            "storing a document",
            lambda: self._client.put_object(
                self.bucket, key, stream, length=length, content_type=content_type, part_size=PART_SIZE
            ),
        )

    async def read_all(self, key: str) -> bytes:
        def read() -> bytes | None:
            try:
                response = self._client.get_object(self.bucket, key)
            except S3Error as error:
                if error.code in {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}:
                    return None
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        data = await self._run("reading a document", read)
        if data is None:
            raise OriginalMissing()
        return data

    async def open(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; the first read happens before this returns (errors surface here,
        while a response status can still be chosen)."""
        response = await self._run("reading a document", lambda: self._client.get_object(self.bucket, key))
        first = await self._run("reading a document", lambda: response.read(READ_CHUNK))

        async def chunks() -> AsyncIterator[bytes]:
            try:
                chunk = first
                while chunk:
                    yield chunk
                    chunk = await self._run("reading a document", lambda: response.read(READ_CHUNK))
            finally:
                response.close()
                response.release_conn()

        return chunks()

    async def remove(self, key: str) -> None:
        await self._run("removing a document", lambda: self._client.remove_object(self.bucket, key))

    async def exists(self, key: str) -> bool:
        def stat() -> bool:
            try:
                self._client.stat_object(self.bucket, key)
            except S3Error as error:
                if error.code in {"NoSuchKey", "NoSuchObject"}:
                    return False
                raise
            return True

        return await self._run("checking a document", stat)
