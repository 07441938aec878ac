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

# KEYS[1] in-progress set; ARGV: now, stale-before, limit, token, ttl. 1 if taken, 0 if full.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


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

    async def acquire(self) -> Slot:
        """Count one send and take an in-progress slot, or raise ChatLimited."""
        now = time.time()
        window_start = math.floor(now / self._window) * self._window
        rate_key = f"chat-rate:{self._user_id}:{window_start}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(rate_key)
            pipe.expire(rate_key, self._window + 1)
            sends, _ = await pipe.execute()
        if sends > self._rate:
            raise ChatLimited("rate", math.ceil(window_start + self._window - now))
        slot = Slot(key=f"chat-in-progress:{self._user_id}", token=secrets.token_hex(8))
        taken = await self._redis.eval(
            _TAKE_SLOT, 1, slot.key, now, now - STALE_AFTER_SECONDS, self._concurrency, slot.token, STALE_AFTER_SECONDS
        )
        if not taken:
            await self._redis.decr(rate_key)  # refused sends do not use up the rate
            raise ChatLimited("concurrency", 1)
        return slot

    async def release(self, slot: Slot) -> None:
        await self._redis.zrem(slot.key, slot.token)
