"""Idempotency-Key for chat/send, in Redis, with Stripe's semantics.

- The first result per (user, key) is kept IDEMPOTENCY_TTL_SECONDS (24 h) and replayed without calling the LLM.
- The same key with a different body: 422 (as the IETF Idempotency-Key draft says; Stripe answers 400).
- The same key while the first request is still running: 409.
- Failures (LLM down, unknown conversation, a dropped stream) release the key, so a retry really runs again.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
# Longer than any single send can run; if a worker dies mid-request the key frees itself after this.
IN_FLIGHT_TTL_SECONDS = 15 * 60

_STATE_IN_FLIGHT = "in_flight"
_STATE_DONE = "done"

# Compare-and-set / compare-and-delete: only the request holding the claim may finish or release it.
_FINISH_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return nil
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class IdempotencyKeyInUse(Exception):
    """A request with this key is still running (409)."""


class IdempotencyKeyReused(Exception):
    """This key was used for a different request body (422)."""


@dataclass(frozen=True)
class Claim:
    redis_key: str
    marker: str  # the exact in-flight value we wrote, so we only ever replace our own


@dataclass(frozen=True)
class Replay:
    result: dict[str, Any]


def fingerprint(request_fields: dict[str, Any]) -> str:
    canonical = json.dumps(request_fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, redis: Redis, *, user_id: int, scope: str = "chat-send") -> None:
        self._redis = redis
        self._prefix = f"idempotency:{scope}:{user_id}:"

    def _redis_key(self, idempotency_key: str) -> str:
        # Hashed: bounded length, and the client's key text never lands in Redis key listings.
        return self._prefix + hashlib.sha256(idempotency_key.encode()).hexdigest()

    async def claim(self, idempotency_key: str, request_fingerprint: str) -> Claim | Replay:
        """Take the key for this request, or return the stored result to replay; raise on conflicts."""
        redis_key = self._redis_key(idempotency_key)
        marker = json.dumps(
            {"state": _STATE_IN_FLIGHT, "fingerprint": request_fingerprint, "token": secrets.token_hex(8)}
        )
        for _ in range(3):  # the key may expire or be released between SET NX and GET: look again
            if await self._redis.set(redis_key, marker, nx=True, ex=IN_FLIGHT_TTL_SECONDS):
                return Claim(redis_key=redis_key, marker=marker)
            stored = await self._redis.get(redis_key)
            if stored is not None:
                return self._existing(json.loads(stored), request_fingerprint)
        raise IdempotencyKeyInUse()

    @staticmethod
    def _existing(stored: dict[str, Any], request_fingerprint: str) -> Replay:
        if stored["fingerprint"] != request_fingerprint:
            raise IdempotencyKeyReused()
        if stored["state"] != _STATE_DONE:
            raise IdempotencyKeyInUse()
        return Replay(result=stored["result"])

    async def finish(self, claim: Claim, result: dict[str, Any]) -> None:
        fingerprint_ = json.loads(claim.marker)["fingerprint"]
        done = json.dumps({"state": _STATE_DONE, "fingerprint": fingerprint_, "result": result})
        await self._redis.eval(_FINISH_SCRIPT, 1, claim.redis_key, claim.marker, done, IDEMPOTENCY_TTL_SECONDS)

    async def release(self, claim: Claim) -> None:
        await self._redis.eval(_RELEASE_SCRIPT, 1, claim.redis_key, claim.marker)
