"""The service over real HTTP against its floors, measured in the same run (printed and written, never
asserted: the machine is shared and noisy, only same-run ratios mean anything).

- chat/send, JSON and streamed, against the same LLM server called directly with the same prompt;
- /health/live and auth/me against a bare FastAPI app on the same server settings (tests/bench/bare_app.py);
  /health/live also on the service's own app without its middleware (tests/bench/unwrapped_app.py): the gap's split;
- history list (page 1, a deep page by offset and by cursor) and detail, 10,000 conversations of one user in
  a table of 1,000,000, against the bare queries on the same pool behind the same bare app.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass

import aiohttp
import asyncpg
import pytest
from redis.asyncio import Redis

from admin_api.auth.sessions import KEY_PREFIX, hash_session_id
from admin_api.chat import llm as chat_llm
from admin_api.chat import repository as chat_repository
from admin_api.chat.limits import ChatLimiter
from admin_api.chat.service import conversation_title
from admin_api.history import repository
from admin_api.settings import Settings
from tests.bench import seed
from tests.bench.load import Stats, StreamTimes, compare, expect_json, log_in, session, timed_stream
from tests.bench.report import Figure, latency, server_cpu, throughput

pytestmark = pytest.mark.bench

PAGE_SIZE = 20
DEEP_PAGE = 400  # rows 7,981-8,000 of the user's 10,000
PROMPT = "How are you?"


@dataclass(frozen=True)
class User:
    id: int
    cookie: dict[str, str]


@pytest.fixture(scope="session")
async def pool(bench_database: str):
    db = await asyncpg.create_pool(bench_database.replace("+asyncpg", "", 1), min_size=1, max_size=4)
    yield db
    await db.close()


@pytest.fixture(scope="session")
async def users(pool, service) -> dict[str, list[User]]:
    """The seeded history user and chat users (tests/bench/seed.py), each logged in through the API."""
    names = [seed.HISTORY_USER] + [f"{seed.CHAT_USER_PREFIX}{n}" for n in range(seed.CHAT_USERS)]
    async with session(4) as http:
        logged_in = [User(*await log_in(http, service.base_url, name, seed.PASSWORD)) for name in names]
    return {"history": logged_in[:1], "chat": logged_in[1:]}


def post(url: str, body: dict, headers: dict | None = None):
    async def call(http: aiohttp.ClientSession) -> None:
        async with http.post(url, json=body, headers=headers) as response:
            await expect_json(response)

    return call


def get(url: str, headers: dict | None = None):
    async def call(http: aiohttp.ClientSession) -> None:
        async with http.get(url, headers=headers) as response:
            await expect_json(response)

    return call


# ---- history --------------------------------------------------------------------------------------------


async def test_history(service, bare, users, pool, bench_report):
    user = users["history"][0]
    ours_url, bare_url = f"{service.base_url}/api/v1/history", f"{bare.base_url}/bare/history"
    async with session(1) as http:
        async with http.post(f"{ours_url}/list", json={"page": DEEP_PAGE - 1, "page_size": PAGE_SIZE},
                             headers=user.cookie) as response:
            cursor = (await expect_json(response))["next_cursor"]
    pages = {
        "page 1": {"page": 1},
        f"page {DEEP_PAGE} by offset": {"page": DEEP_PAGE},
        f"page {DEEP_PAGE} by cursor": {"cursor": cursor},
    }
    floor = "bare FastAPI + the same SQL (list + count) on the same pool"
    for name, paging in pages.items():
        body = {"page_size": PAGE_SIZE, **paging}
        ours, base = await compare(post(f"{ours_url}/list", body, user.cookie),
                                   post(f"{bare_url}/list", {"user_id": user.id, **body}), count=300)
        latency(bench_report, f"history/list {name}", ours, base, floor, target=1.5 if name == "page 1" else None)

    # Where the floor's time goes: the SQL alone, from here, on a pool of our own.
    async def sql_only(_http) -> None:
        async with pool.acquire() as conn:
            await conn.fetch(repository.LIST_BY_OFFSET_SQL, user.id, PAGE_SIZE + 1, 0)
            await conn.fetchval(repository.COUNT_SQL, user.id)

    base, sql = await compare(post(f"{bare_url}/list", {"user_id": user.id, "page": 1, "page_size": PAGE_SIZE}),
                              sql_only, count=300)
    latency(bench_report, "bare history/list page 1 (the floor)", base, sql, "its SQL alone (asyncpg, no HTTP)",
            compare_by="delta")

    detail = {"cnvs_idt_id": seed.NEWEST_CONVERSATION}
    ours, base = await compare(post(f"{ours_url}/detail", detail, user.cookie),
                               post(f"{bare_url}/detail", {"user_id": user.id, **detail}), count=300)
    latency(bench_report, f"history/detail ({seed.DETAIL_MESSAGES} messages)", ours, base,
            "bare FastAPI + the same SQL (find + messages) on the same pool")


# ---- health and auth ------------------------------------------------------------------------------------


async def test_health_and_auth(service, bare, unwrapped, users, bench_report):
    cookie = users["history"][0].cookie
    bare_app = "bare FastAPI app, same server settings"
    live = "/health/live, 16 connections"
    ours, middle, base = await compare(
        get(f"{service.base_url}/health/live"), get(f"{unwrapped.base_url}/health/live"),
        get(f"{bare.base_url}/health/live"),
        count=9000, concurrency=16, servers=(service.process.pid, unwrapped.process.pid, bare.process.pid))
    throughput(bench_report, live, ours, base, bare_app, target=0.9)
    server_cpu(bench_report, live, ours, base, bare_app)
    latency(bench_report, live, ours, base, bare_app)
    # Where the gap is: the service's app without its middleware, on its own server, between the two.
    without = f"{live}: the service without its middleware"
    throughput(bench_report, without, middle, base, bare_app)
    server_cpu(bench_report, without, middle, base, bare_app)
    server_cpu(bench_report, f"{live}: the middleware's share", ours, middle, "the service without its middleware",
               compare_by="delta")
    ours, base = await compare(get(f"{service.base_url}/api/v1/auth/me", cookie),
                               get(f"{bare.base_url}/api/v1/auth/me", cookie), count=300)
    latency(bench_report, "auth/me, 1 user", ours, base, f"{bare_app} + the session's Redis GETEX")
    ours, base = await compare(get(f"{service.base_url}/api/v1/auth/me", cookie),
                               get(f"{bare.base_url}/api/v1/auth/me", cookie), count=2000, concurrency=16,
                               servers=(service.process.pid, bare.process.pid))
    throughput(bench_report, "auth/me, 16 connections", ours, base, f"{bare_app} + the session's Redis GETEX")
    server_cpu(bench_report, "auth/me, 16 connections", ours, base, f"{bare_app} + the session's Redis GETEX")


# ---- chat -----------------------------------------------------------------------------------------------


def chat_calls(service, llm, users: list[User], stream: bool = False):
    cookies = itertools.cycle([user.cookie for user in users])
    send = f"{service.base_url}/api/v1/chat/send"
    direct = f"{llm.base_url}/v1/chat/completions"
    direct_body = {"model": "test-model", "messages": [{"role": "user", "content": PROMPT}]}

    async def ours(http: aiohttp.ClientSession) -> None:
        async with http.post(send, json={"message": PROMPT}, headers=next(cookies)) as response:
            await expect_json(response)

    return ours, post(direct, direct_body)


class TurnRoundTrips:
    """What a turn must do besides the LLM, done from here with the service's own functions: before the LLM,
    the session's Redis GETEX, the limits (one script) and the user's message (one statement); after it, the
    answer (one statement) and, meanwhile, the slot's release. chat/send's time above this floor is its Python: server,
    middleware, FastAPI, validation, our code."""

    def __init__(self, pool, redis: Redis, user: User) -> None:
        self.pool, self.redis, self.user = pool, redis, user
        self.session_key = KEY_PREFIX + hash_session_id(user.cookie["Cookie"].split("=", 1)[1])
        self.limiter = ChatLimiter(redis, user_id=user.id, rate=1_000_000, window_seconds=60, concurrency=1000)

    async def before_llm(self):
        await self.redis.getex(self.session_key, ex=1800)
        slot = await self.limiter.acquire()
        cnvs_idt_id, user_message_id = str(uuid.uuid4()), str(uuid.uuid4())
        await chat_repository.start_new_conversation(
            self.pool, cnvs_idt_id=cnvs_idt_id, user_id=self.user.id, title=conversation_title(PROMPT),
            msg_idt_id=user_message_id, content=PROMPT)
        return slot, cnvs_idt_id, user_message_id

    async def after_llm(self, slot, cnvs_idt_id: str, user_message_id: str) -> None:
        await asyncio.gather(  # as the service does: the slot is freed while the answer is stored
            chat_repository.record_answer(self.pool, msg_idt_id=str(uuid.uuid4()), cnvs_idt_id=cnvs_idt_id,
                                          user_msg_idt_id=user_message_id, content="answer", sources=None),
            self.limiter.release(slot))

    def around(self, llm_call):
        async def call(http: aiohttp.ClientSession) -> None:
            turn = await self.before_llm()
            await llm_call(http)
            await self.after_llm(*turn)

        return call


async def test_chat_send(service, llm, users, pool, redis_url, bench_report):
    direct = "the same LLM server called directly, same prompt"
    for concurrency, count in ((1, 200), (seed.CHAT_USERS, 500)):
        who = f"{concurrency} user" + ("s" if concurrency > 1 else "")
        ours, base = await compare(*chat_calls(service, llm, users["chat"][:concurrency]),
                                   count=count, concurrency=concurrency)
        latency(bench_report, f"chat/send JSON, {who}", ours, base, direct, compare_by="delta",
                target=3 if concurrency == 1 else None)
        if concurrency > 1:
            throughput(bench_report, f"chat/send JSON, {who}", ours, base, direct)

    # Where part of the time goes: the LLM client the service uses (chat/llm.py over aiohttp), called from here.
    client = chat_llm.build_llm_client(Settings(database_url="postgresql+asyncpg://unused@localhost/unused",
                                       redis_url="redis://unused", llm_endpoint=f"{llm.base_url}/v1",
                                       llm_model="test-model"))

    async def client_call(_http) -> None:
        await chat_llm.complete(client, model="test-model", messages=[{"role": "user", "content": PROMPT}],
                                temperature=None)

    try:
        ours_client, base = await compare(client_call, chat_calls(service, llm, users["chat"][:1])[1], count=200)
    finally:
        await client.close()
    latency(bench_report, "the service's LLM client (chat/llm.py), 1 user", ours_client, base,
            "the same call with the load generator's client (aiohttp)", compare_by="delta")

    # Where the rest goes: the turn's Redis and SQL round trips (its floor) against chat/send itself.
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        ours, direct_call = chat_calls(service, llm, users["chat"][:1])
        ours, floor, base = await compare(ours, TurnRoundTrips(pool, redis, users["chat"][0]).around(direct_call),
                                          direct_call, count=300)
    finally:
        await redis.aclose()
    latency(bench_report, "the turn's floor: the LLM called directly + the turn's 3 Redis and 2 SQL round trips "
            "(4 in a row), 1 user", floor, base, "the LLM server called directly", compare_by="delta")
    latency(bench_report, "chat/send JSON over its floor (the service's Python), 1 user", ours, floor,
            "the turn's floor (above)", compare_by="delta")


def _our_token(event: str, data: str) -> bool:
    return event == "delta"


def _llm_token(event: str, data: str) -> bool:
    if data == "[DONE]":
        return False
    choices = json.loads(data).get("choices") or []
    return bool(choices and choices[0]["delta"].get("content"))


async def test_chat_stream(service, llm, users, pool, redis_url, bench_report):
    send = f"{service.base_url}/api/v1/chat/send"
    direct = f"{llm.base_url}/v1/chat/completions"
    direct_body = {"model": "test-model", "messages": [{"role": "user", "content": PROMPT}], "stream": True,
                   "stream_options": {"include_usage": True}}
    for concurrency, count in ((1, 120), (seed.CHAT_USERS, 300)):
        cookies = itertools.cycle([user.cookie for user in users["chat"][:concurrency]])
        measured = {"ours": StreamTimes(), "direct": StreamTimes()}

        def ours(times):
            return lambda http: timed_stream(http, times, send, {"message": PROMPT, "stream": True}, next(cookies),
                                             _our_token)

        def base(times):
            return lambda http: timed_stream(http, times, direct, direct_body, {}, _llm_token)

        warm = StreamTimes()
        await compare(ours(warm), base(warm), count=0, concurrency=concurrency, rounds=1)  # warm-up only
        await compare(ours(measured["ours"]), base(measured["direct"]), count=count, concurrency=concurrency,
                      warmup=0)
        who = f"{concurrency} user" + ("s" if concurrency > 1 else "")
        first = {name: _stats(times.first_token_ms) for name, times in measured.items()}
        latency(bench_report, f"chat/send stream, time to first token, {who}", first["ours"], first["direct"],
                "the same LLM server streaming directly", compare_by="delta",
                target=1 if concurrency == 1 else None)
        per_token = {name: _stats(times.per_token_us) for name, times in measured.items()}
        bench_report.add(Figure(
            f"chat/send stream, time per token, {who}, p50", per_token["ours"].p50, per_token["direct"].p50, "us",
            "the same LLM server streaming directly", "delta",
            details={"ours": per_token["ours"].as_json(), "baseline": per_token["direct"].as_json()}))

    # Where the first token's time goes: the round trips a turn makes before the LLM is asked, from here.
    redis = Redis.from_url(redis_url, decode_responses=True)
    trips = TurnRoundTrips(pool, redis, users["chat"][0])
    measured = {"ours": StreamTimes(), "floor": StreamTimes(), "direct": StreamTimes()}
    cookie = users["chat"][0].cookie

    def floor(times: StreamTimes):
        async def call(http: aiohttp.ClientSession) -> None:
            started = time.perf_counter()
            turn = await trips.before_llm()
            before_ms = (time.perf_counter() - started) * 1000
            await timed_stream(http, times, direct, direct_body, {}, _llm_token)
            times.first_token_ms[-1] += before_ms  # timed from the start of the turn
            await trips.after_llm(*turn)

        return call

    def calls(times: dict[str, StreamTimes]):
        return (
            lambda http: timed_stream(http, times["ours"], send, {"message": PROMPT, "stream": True}, cookie,
                                      _our_token),
            floor(times["floor"]),
            lambda http: timed_stream(http, times["direct"], direct, direct_body, {}, _llm_token),
        )

    try:
        warm = StreamTimes()
        await compare(*calls({"ours": warm, "floor": warm, "direct": warm}), count=0, rounds=1)  # warm-up only
        await compare(*calls(measured), count=120, warmup=0)
    finally:
        await redis.aclose()
    first = {name: _stats(times.first_token_ms) for name, times in measured.items()}
    latency(bench_report, "the first token's floor: the LLM streaming directly after the turn's 2 Redis and 1 SQL "
            "round trips, 1 user", first["floor"], first["direct"], "the LLM server streaming directly",
            compare_by="delta")
    latency(bench_report, "chat/send stream, time to first token over its floor (the service's Python), 1 user",
            first["ours"], first["floor"], "the first token's floor (above)", compare_by="delta")


def _stats(samples: list[float]) -> Stats:
    stats = Stats()
    stats.add(samples, 0.0)
    return stats
