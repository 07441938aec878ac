"""Login: password check, failure throttling, session rotation; and the password hashing helpers."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
from dataclasses import dataclass

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from admin_api.auth import repository
from admin_api.auth.sessions import SessionStore
from admin_api.settings import Settings

# argon2id with the library's (RFC 9106 low-memory) defaults; a stateless, immutable configuration.
HASHER = PasswordHasher()
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


class InvalidCredentials(Exception):
    """Unknown user or wrong password: deliberately indistinguishable."""


class TooManyFailures(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed logins")
        self.retry_after = retry_after


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def validate_new_user(username: str, password: str) -> None:
    """Raises ValueError saying what is wrong (without echoing the password)."""
    if not USERNAME_PATTERN.match(username):
        raise ValueError("username must be 1-64 letters, digits or . _ @ - and start with a letter or digit")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise ValueError(f"password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters")


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class LoggedIn:
    user: repository.UserRecord
    session_id: str


class AuthService:
    def __init__(self, pool: asyncpg.Pool, redis: Redis, settings: Settings) -> None:
        self.pool = pool
        self.redis = redis
        self.settings = settings
        self.sessions = SessionStore(
            redis, idle_seconds=settings.session_idle_seconds, max_seconds=settings.session_max_seconds
        )

    async def login(self, username: str, password: str, *, client_ip: str, previous_session: str | None) -> LoggedIn:
        throttle_key = self._throttle_key(username, client_ip)
        # Counted before the password is checked, atomically: N guesses sent at once take N numbers, so
        # no more than LOGIN_MAX_FAILURES of them are ever verified (a read-then-count let them all through).
        attempts = await self._count_attempt(throttle_key)
        if attempts > self.settings.login_max_failures:
            raise TooManyFailures(retry_after=await self._retry_after(throttle_key))

        user = await repository.find_active_user(self.pool, username)
        # argon2 is deliberately slow: run it off the event loop. For an unknown user, verify against a
        # dummy hash anyway so the response time does not tell which usernames exist.
        stored_hash = user.password_hash if user else await asyncio.to_thread(_dummy_hash)
        valid = await asyncio.to_thread(_verify, stored_hash, password)
        if user is None or not valid:
            raise InvalidCredentials()  # the attempt stays counted

        await self.redis.delete(throttle_key)
        if HASHER.check_needs_rehash(user.password_hash):
            new_hash = await asyncio.to_thread(hash_password, password)
            await repository.update_password_hash(self.pool, user_id=user.id, password_hash=new_hash)
        # Rotation: a session id that existed before login (e.g. planted by an attacker) never survives it.
        if previous_session:
            await self.sessions.delete(previous_session)
        session_id = await self.sessions.create(user_id=user.id, username=user.username, is_admin=user.is_admin)
        return LoggedIn(user=user, session_id=session_id)

    async def logout(self, session_id_hash: str) -> None:
        await self.sessions.delete_by_hash(session_id_hash)

    @staticmethod
    def _throttle_key(username: str, client_ip: str) -> str:
        # Hashed: Redis keys show up in monitoring; usernames and addresses need not.
        digest = hashlib.sha256(f"{username}\0{client_ip}".encode()).hexdigest()
        return f"login-failures:{digest}"

    async def _count_attempt(self, key: str) -> int:
        """Count one attempt in the window (which starts at the first); returns the count including it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.settings.login_failure_window_seconds, nx=True)
            attempts, _ = await pipe.execute()
        return attempts

    async def _retry_after(self, key: str) -> int:
        ttl = await self.redis.ttl(key)
        return ttl if ttl > 0 else self.settings.login_failure_window_seconds
