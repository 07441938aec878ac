"""Redis stopped and started again under load, against a real `admin-api serve` process.

Sessions live in Redis, so while it is down no authenticated request can be served. The right answer is
503 with Retry-After ("try again shortly"), never 401: a 401 tells the browser the session is gone and logs
the user out, although the session is intact and will be usable again as soon as Redis is back. Nor 500.
After Redis returns (with its data: the test saves a snapshot before stopping it, as a persistent or
replicated production Redis would keep it), the same cookies work again without a new login.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx

from tests.reliability.conftest import SEND, Recorder, create_users, logged_in_clients, ready_status, wait_for

CLIENTS = 24


async def _worker(http: httpx.AsyncClient, recorder: Recorder, stop: asyncio.Event, n: int) -> None:
    for step in itertools.count():
        if stop.is_set():
            return
        match (n + step) % 4:
            case 0:
                await recorder.request(http, "me", "/api/v1/auth/me")
            case 1:
                await recorder.request(http, "list", "/api/v1/history/list", {"page": 1, "page_size": 5})
            case 2:
                await recorder.request(http, "send", SEND, {"cnvs_idt_id": "", "message": f"c{n} s{step}"})
            case 3:
                await recorder.request(
                    http, "send", SEND, {"cnvs_idt_id": "", "message": f"c{n} s{step}"}, headers={"Idempotency-Key": f"k-{n}-{step}"}
                )


async def test_redis_restart_under_load_is_503_not_401_and_sessions_survive(
    private_redis, serve, database_url, password_hash
):
    redis_server = await asyncio.to_thread(private_redis)
    usernames = await create_users(database_url, CLIENTS, password_hash)
    recorder = Recorder(allowed_errors=frozenset({503}))

    async with serve(REDIS_URL=redis_server.url(0)) as app, logged_in_clients(app.base_url, usernames) as clients:
        stop = asyncio.Event()
        workers = [asyncio.create_task(_worker(http, recorder, stop, n)) for n, http in enumerate(clients)]
        try:
            await wait_for(lambda: recorder.count(lambda o: o.ok) >= 2 * CLIENTS, "load before the outage")
            assert redis_server._command("SAVE").startswith(b"+OK")
            await asyncio.to_thread(redis_server.stop)
            outage_start = len(recorder.outcomes)
            await wait_for(lambda: recorder.count(lambda o: o.status == 503) >= 2 * CLIENTS, "503s during the outage")
            assert await ready_status(app.base_url) == 503
            # A login cannot start a session either: 503 as well, not 401 ("wrong password").
            async with httpx.AsyncClient(base_url=app.base_url, timeout=20) as anonymous:
                login = await recorder.request(
                    anonymous, "login", "/api/v1/auth/login", {"username": usernames[0], "password": "x" * 12}
                )
            assert login.status == 503
            await asyncio.to_thread(redis_server.start)
            await wait_for(lambda: _is_200(app.base_url), "readiness 200 after Redis came back")
            recovered_at = len(recorder.outcomes)
            await wait_for(
                lambda: sum(1 for o in recorder.outcomes[recovered_at:] if o.ok) >= 2 * CLIENTS,
                "requests succeeding after Redis came back",
            )
        finally:
            stop.set()
            await asyncio.gather(*workers)

        problems = recorder.problems()
        assert problems == [], problems[:10]
        during = recorder.outcomes[outage_start:recovered_at]
        assert not any(o.status == 401 for o in recorder.outcomes), "a Redis outage logged users out"
        assert any(o.status == 503 and o.kind == "me" for o in during)
        # Every client's session survived: the same cookie works, no new login.
        me = await asyncio.gather(*(recorder.request(http, "me", "/api/v1/auth/me") for http in clients))
        assert [o.status for o in me] == [200] * CLIENTS
        assert [o.body["username"] for o in me] == usernames


async def _is_200(base_url: str) -> bool:
    return await ready_status(base_url) == 200
