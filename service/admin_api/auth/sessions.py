"""Server-side sessions in Redis.

The cookie holds a random 256-bit id; Redis holds the session under the id's SHA-256, so a dump of
Redis (or a log line naming a key) does not yield a usable cookie. Idle expiry is the key's TTL,
renewed on each use; absolute expiry is checked against the creation time, so neither depends on
the client.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

KEY_PREFIX = "session:"
MAX_COOKIE_LENGTH = 128  # token_urlsafe(32) is 43 characters; anything much longer is not ours


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id_hash: str
    user_id: int
    username: str
    is_admin: bool
    created_at: float  # Unix time


class SessionStore:
    def __init__(self, redis: Redis, *, idle_seconds: int, max_seconds: int) -> None:
        self.redis = redis
        self.idle_seconds = idle_seconds
        self.max_seconds = max_seconds

    async def create(self, *, user_id: int, username: str, is_admin: bool) -> str:
        """Start a session; returns the id for the cookie (never stored in Redis as such)."""
        session_id = secrets.token_urlsafe(32)
        record = {"user_id": user_id, "username": username, "is_admin": is_admin, "created_at": time.time()}
        ttl = min(self.idle_seconds, self.max_seconds)
        await self.redis.set(KEY_PREFIX + hash_session_id(session_id), json.dumps(record), ex=ttl)
        return session_id

    async def load(self, session_id: str) -> Session | None:
        """The live session for this id, its idle timer renewed; None if unknown or expired."""
        if not session_id or len(session_id) > MAX_COOKIE_LENGTH:
            return None
        id_hash = hash_session_id(session_id)
        key = KEY_PREFIX + id_hash
        # Read and renew the idle timer in one round trip.
        raw = await self.redis.getex(key, ex=self.idle_seconds)
        if raw is None:
            return None
        record = json.loads(raw)
        remaining = self.max_seconds - (time.time() - record["created_at"])
        if remaining <= 0:
            await self.redis.delete(key)
            return None
        if remaining < self.idle_seconds:  # near the absolute limit: the key must not outlive it
            await self.redis.expire(key, math.ceil(remaining))
        return Session(
            id_hash=id_hash,
            user_id=record["user_id"],
            username=record["username"],
            is_admin=record["is_admin"],
            created_at=record["created_at"],
        )

    async def delete(self, session_id: str) -> None:
        if session_id and len(session_id) <= MAX_COOKIE_LENGTH:
            await self.delete_by_hash(hash_session_id(session_id))

    async def delete_by_hash(self, id_hash: str) -> None:
        await self.redis.delete(KEY_PREFIX + id_hash)
