"""Per-user limits on chat/send, in Redis (shared by every replica): a rate (sends per window) and a
concurrency (sends in progress). Checked before the LLM is called; an idempotent replay is not a send.

The rate is a fixed window per user. The concurrency is a sorted set of in-progress sends scored by their
start time: a send counts until it ends (answer stored, failed, or the stream closed), and an entry older
than STALE_AFTER_SECONDS (a worker that died mid-send) no longer counts.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

STALE_AFTER_SECONDS = 15 * 60  # longer than any send can run (the LLM timeout bounds it)

# One round trip for both limits. KEYS: the rate counter, the in-progress set. ARGV: rate, window TTL, now,
# stale-before, concurrency, token, set TTL. 0: taken; 1: over the rate; 2: too many in progress (that send is
# then not counted in the rate: refused sends do not use it up).
_ACQUIRE = """
local sends = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if sends > tonumber(ARGV[1]) then
  return 1
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  redis.call('DECR', KEYS[1])
  return 2
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[7])
return 0
"""
_TAKEN, _OVER_RATE = 0, 1


class ChatLimited(Exception):
    """Too many sends (429): `reason` is "rate" or "concurrency" (the metrics label)."""

    def __init__(self, reason: str, retry_after: int) -> None:
        super().__init__(f"chat send limited ({reason})")
        self.reason = reason
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True)
class Slot:
    key: str
    token: str


class ChatLimiter:
    def __init__(self, redis: Redis, *, user_id: int, rate: int, window_seconds: int, concurrency: int) -> None:
        self._redis = redis
        self._user_id = user_id
        self._rate = rate
        self._window = window_seconds
        self._concurrency = concurrency
        self._acquire = redis.register_script(_ACQUIRE)  # EVALSHA: Redis keeps the script's text

    async def acquire(self) -> Slot:
        """Count one send and take an in-progress slot, or raise ChatLimited."""
        now = time.time()
        window_start = math.floor(now / self._window) * self._window
        slot = Slot(key=f"chat-in-progress:{self._user_id}", token=secrets.token_hex(8))
        outcome = await self._acquire(
            keys=[f"chat-rate:{self._user_id}:{window_start}", slot.key],
            args=[self._rate, self._window + 1, now, now - STALE_AFTER_SECONDS, self._concurrency, slot.token,
                  STALE_AFTER_SECONDS],
        )
        if outcome == _TAKEN:
            return slot
        if outcome == _OVER_RATE:
            raise ChatLimited("rate", math.ceil(window_start + self._window - now))
        raise ChatLimited("concurrency", 1)

    async def release(self, slot: Slot) -> None:
        await self._redis.zrem(slot.key, slot.token)
