"""Login: password check, failure throttling, session rotation; and the password hashing helpers."""

from __future__ import annotations

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
from admin_api.core.bounded import BoundedWork
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
    def __init__(
        self, pool: asyncpg.Pool, redis: Redis, settings: Settings, password_checks: BoundedWork, sessions: SessionStore
    ) -> None:
        self.pool = pool
        self.password_checks = password_checks
        self.redis = redis
        self.settings = settings
        self.sessions = sessions

    async def login(self, username: str, password: str, *, client_ip: str, previous_session: str | None) -> LoggedIn:
        keys = _ThrottleKeys.of(username, client_ip)
        # Checked and counted before the password is, atomically: N guesses sent at once take N numbers, so
        # no more than the limits are ever verified (a read-then-count let them all through).
        await self._admit(keys)

        try:
            user, valid = await self._check_password(username, password)
        except Exception:
            # Never judged (hashing saturated, database down): not a failure. Counted, a burst of correct
            # logins refused with 503 would lock its own address out for the whole window.
            await self._refund(keys)
            raise
        if user is None or not valid:
            raise InvalidCredentials()  # the attempt stays counted

        await self._forget_failures(keys)
        if HASHER.check_needs_rehash(user.password_hash):
            new_hash = await self.password_checks.run(hash_password, password)
            await repository.update_password_hash(self.pool, user_id=user.id, password_hash=new_hash)
        # Rotation: a session id that existed before login (e.g. planted by an attacker) never survives it.
        if previous_session:
            await self.sessions.delete(previous_session)
        session_id = await self.sessions.create(user_id=user.id, username=user.username, is_admin=user.is_admin)
        return LoggedIn(user=user, session_id=session_id)

    async def _check_password(self, username: str, password: str) -> tuple[repository.UserRecord | None, bool]:
        user = await repository.find_active_user(self.pool, username)
        # argon2 is deliberately slow: run it off the event loop, bounded (Saturated: 503). For an unknown
        # user, verify against a dummy hash anyway so the response time does not tell which usernames exist.
        stored_hash = user.password_hash if user else await self.password_checks.run(_dummy_hash)
        return user, await self.password_checks.run(_verify, stored_hash, password)

    async def logout(self, session_id_hash: str) -> None:
        await self.sessions.delete_by_hash(session_id_hash)

    async def _admit(self, keys: _ThrottleKeys) -> None:
        settings = self.settings
        verdict, ttl = await self.redis.eval(
            _ADMIT_SCRIPT, 5, keys.pair, keys.address, keys.account, keys.backoff, keys.known,
            settings.login_failure_window_seconds, settings.login_max_failures, settings.login_address_max_failures,
            settings.login_account_max_failures, settings.login_backoff_max_seconds, keys.address_id,
        )
        if verdict != "ok":
            raise TooManyFailures(retry_after=ttl if ttl > 0 else settings.login_failure_window_seconds)

    async def _refund(self, keys: _ThrottleKeys) -> None:
        await self.redis.eval(_REFUND_SCRIPT, 3, keys.pair, keys.address, keys.account)

    async def _forget_failures(self, keys: _ThrottleKeys) -> None:
        """A right password: this pair and this account start afresh, the address gets its attempt back, and
        the address becomes one the account's back-off does not apply to."""
        await self.redis.eval(_FORGET_SCRIPT, 5, keys.pair, keys.address, keys.account, keys.backoff, keys.known,
                              keys.address_id, KNOWN_ADDRESS_DAYS * 86400)


KNOWN_ADDRESS_DAYS = 30

# KEYS: pair, address, account, backoff, known. ARGV: window, pair max, address max, account max, back-off
# max, address id. Refused: {reason, seconds to wait}; admitted (counted in all three): {"ok", 0}.
_ADMIT_SCRIPT = """
local function count(key) return tonumber(redis.call('GET', key) or '0') end
if count(KEYS[1]) >= tonumber(ARGV[2]) then return {'pair', redis.call('TTL', KEYS[1])} end
if count(KEYS[2]) >= tonumber(ARGV[3]) then return {'address', redis.call('TTL', KEYS[2])} end
local over = count(KEYS[3]) - tonumber(ARGV[4])
if over >= 0 and redis.call('SISMEMBER', KEYS[5], ARGV[6]) == 0 then
  local delay = math.floor(math.min(2 ^ math.min(over, 30), tonumber(ARGV[5])))
  if not redis.call('SET', KEYS[4], '1', 'NX', 'EX', delay) then return {'account', redis.call('TTL', KEYS[4])} end
end
for i = 1, 3 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[1], 'NX')
end
return {'ok', 0}
"""

# KEYS: pair, address, account. Takes back the count of an attempt that was admitted but never judged.
_REFUND_SCRIPT = """
for i = 1, 3 do
  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
end
return 1
"""

# KEYS as above. ARGV: address id, known-address lifetime.
_FORGET_SCRIPT = """
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('EXPIRE', KEYS[5], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class _ThrottleKeys:
    """Redis keys of the login throttle. Hashed: Redis keys show up in monitoring; usernames and addresses
    need not."""

    pair: str  # this account from this address
    address: str  # this address, any account
    account: str  # this account, any address
    backoff: str  # set while the account is backing off
    known: str  # addresses the account logged in from
    address_id: str

    @classmethod
    def of(cls, username: str, client_ip: str) -> _ThrottleKeys:
        def digest(*parts: str) -> str:
            return hashlib.sha256("\0".join(parts).encode()).hexdigest()

        account = digest(username)
        address = digest("address", client_ip)
        return cls(
            pair=f"login-failures:{digest(username, client_ip)}",
            address=f"login-failures:address:{address}",
            account=f"login-failures:account:{account}",
            backoff=f"login-backoff:{account}",
            known=f"login-known-addresses:{account}",
            address_id=address,
        )
