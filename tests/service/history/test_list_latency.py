"""How much the service adds to the history list query: the API in-process (session check in Redis,
middleware, validation, two queries, JSON) against the bare asyncpg query, measured in the same run.

Prints the numbers; asserts nothing about time (machines differ)."""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import pytest

from admin_api.history import repository

CALLS = 200
PAGE_SIZE = 20


async def _timed(call, calls: int = CALLS) -> list[float]:
    for _ in range(10):  # warm up: connections, prepared statements
        await call()
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


@pytest.mark.bench
async def test_history_list_latency(user_client, seed_conversation, db, capsys):
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for n in range(100):
        await seed_conversation(user_client.user.id, title=f"Conversation {n}", reg_dt=start + timedelta(minutes=n))
    user_id = user_client.user.id

    async def api_call():
        response = await user_client.post("/api/v1/history/list", json={"page": 2, "page_size": PAGE_SIZE})
        assert response.status_code == 200

    async def bare_query():
        async with db.acquire() as conn:
            await conn.fetch(repository.LIST_BY_OFFSET_SQL, user_id, PAGE_SIZE + 1, PAGE_SIZE)

    async def bare_query_and_count():
        async with db.acquire() as conn:
            await conn.fetch(repository.LIST_BY_OFFSET_SQL, user_id, PAGE_SIZE + 1, PAGE_SIZE)
            await conn.fetchval(repository.COUNT_SQL, user_id)

    api = await _timed(api_call)
    bare = await _timed(bare_query)
    bare_both = await _timed(bare_query_and_count)

    def summary(samples: list[float]) -> str:
        ordered = sorted(samples)
        p95 = ordered[int(len(ordered) * 0.95) - 1]
        return (
            f"mean {statistics.mean(samples):6.3f} ms  median {statistics.median(samples):6.3f} ms  p95 {p95:6.3f} ms"
        )

    with capsys.disabled():
        print(f"\nhistory/list page 2 of 100, {CALLS} calls each:")
        print(f"  API in-process (httpx ASGI)  {summary(api)}")
        print(f"  bare asyncpg list query      {summary(bare)}")
        print(f"  bare asyncpg list + count    {summary(bare_both)}")
        print(f"  ratio API / bare list query: {statistics.mean(api) / statistics.mean(bare):.1f}x")
