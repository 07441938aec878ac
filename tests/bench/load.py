"""The load generator's measuring tools: requests over real HTTP (aiohttp, keep-alive), latencies and
throughput, ours and a baseline interleaved in rounds so that both see the same machine load."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

# One request (on the given session); returns when the response is read, raises if it is not what was asked.
Call = Callable[[aiohttp.ClientSession], Awaitable[None]]


@dataclass
class Stats:
    """Latencies in ms of `count` requests, and their throughput (requests per second, all clients)."""

    samples: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the timed rounds
    cpu_seconds: float = 0.0  # CPU time the server process spent in them, when it was watched

    def add(self, samples: list[float], seconds: float, cpu_seconds: float = 0.0) -> None:
        self.samples += samples
        self.seconds += seconds
        self.cpu_seconds += cpu_seconds

    @property
    def cpu_us_per_request(self) -> float:
        """The server's own CPU per request: what its throughput is once its core is saturated, and far less
        swayed than wall time by what else the machine runs."""
        return self.cpu_seconds * 1e6 / len(self.samples) if self.samples else 0.0

    def quantile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def rps(self) -> float:
        return len(self.samples) / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict:
        return {
            "count": len(self.samples),
            "p50_ms": round(self.p50, 3),
            "p90_ms": round(self.quantile(0.90), 3),
            "p95_ms": round(self.quantile(0.95), 3),
            "p99_ms": round(self.quantile(0.99), 3),
            "mean_ms": round(statistics.mean(self.samples), 3),
            "rps": round(self.rps, 1),
            **({"server_cpu_us_per_request": round(self.cpu_us_per_request, 1)} if self.cpu_seconds else {}),
        }


def session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, force_close=False),
        cookie_jar=aiohttp.DummyCookieJar(),  # each call sends its own user's cookie
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def _round(http: aiohttp.ClientSession, call: Call, count: int, concurrency: int) -> tuple[list[float], float]:
    samples: list[float] = []
    remaining = count

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call(http)
            samples.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return samples, time.perf_counter() - started


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def compare(
    *calls: Call, count: int, concurrency: int = 1, rounds: int = 3, warmup: int = 20,
    servers: tuple[int | None, ...] = (),
) -> tuple[Stats, ...]:
    """`count` requests of each call (ours, its baseline, maybe a floor), by `concurrency` clients, in `rounds`
    alternating rounds after a warm-up; their Stats in the same order. `servers`: the pid of the server
    process each call is answered by (None: not watched), for its CPU time per request."""
    results = tuple(Stats() for _ in calls)
    pids = list(servers) + [None] * (len(calls) - len(servers))
    async with session(concurrency) as http:
        for call in calls:
            await _round(http, call, max(warmup, concurrency), concurrency)
        for _ in range(rounds):
            for call, stats, pid in zip(calls, results, pids):
                before = cpu_seconds(pid) if pid else 0.0
                samples, seconds = await _round(http, call, count // rounds, concurrency)
                stats.add(samples, seconds, cpu_seconds(pid) - before if pid else 0.0)
    return results


async def expect_json(response: aiohttp.ClientResponse, status: int = 200) -> dict:
    body = await response.read()
    if response.status != status:
        raise AssertionError(f"{response.method} {response.url}: {response.status} {body[:300]!r}")
    return json.loads(body)


async def log_in(http: aiohttp.ClientSession, base_url: str, username: str, password: str) -> tuple[int, dict]:
    """Log in through the API: the user's id, and the Cookie header that carries the session (the sessions are
    in Redis, so it also works on another server process on the same Redis)."""
    credentials = {"username": username, "password": password}
    async with http.post(f"{base_url}/api/v1/auth/login", json=credentials) as response:
        user_id = (await expect_json(response))["id"]
        cookie = response.cookies["admin_api_session"].value
    return user_id, {"Cookie": f"admin_api_session={cookie}"}


@dataclass
class StreamTimes:
    first_token_ms: list[float] = field(default_factory=list)
    per_token_us: list[float] = field(default_factory=list)  # (last token - first token) / (tokens - 1)


async def timed_stream(
    http: aiohttp.ClientSession, times: StreamTimes, url: str, body: dict, headers: dict, is_token: Callable
) -> None:
    """POST a streamed request and note when the first and the last token arrived.
    `is_token(event_name, data)` says whether an SSE event carries a token."""
    started = time.perf_counter()
    first = last = None
    tokens = 0
    async with http.post(url, json=body, headers=headers) as response:
        if response.status != 200:
            raise AssertionError(f"stream {url}: {response.status} {(await response.read())[:300]!r}")
        name = "message"
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                if is_token(name, line[5:].strip()):
                    last = time.perf_counter()
                    first = first or last
                    tokens += 1
            elif not line:
                name = "message"
    if tokens < 2:
        raise AssertionError(f"stream {url}: {tokens} tokens")
    times.first_token_ms.append((first - started) * 1000)
    times.per_token_us.append((last - first) * 1e6 / (tokens - 1))
