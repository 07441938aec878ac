"""The Redis client (sessions, login rate limits, idempotency keys)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from admin_api.settings import Settings


def create_redis(settings: Settings) -> Redis:
    """Strings in, strings out. Short timeouts and few retries: when Redis is down a request should
    fail fast with a 503, not hang on the library's default back-off."""
    return Redis.from_url(
        settings.redis_url,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2),
    )
