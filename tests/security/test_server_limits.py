"""The server itself, as `admin-api serve` runs it (a real process, raw sockets where clients misbehave):
who may set the client address (X-Forwarded-For), and how long and how large a request may be in coming.

FINDINGS (fixed): uvicorn trusted X-Forwarded-For from loopback by default, so a client on the same host (or
behind a same-pod proxy) rotated the header and guessed passwords without limit; headers or a body trickled
a byte every few seconds held a connection forever; an 8 MB header was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from tests.support.serve import serving_async

LOGIN = "/api/v1/auth/login"
TRICKLE_PAUSE = 0.5  # seconds between trickled bytes
CUT_OFF_WITHIN = 60.0  # a generous bound: without the deadlines the connection stays open forever


@pytest.fixture
def serve(tmp_path, database_url, redis_url, openai_server):
    @contextlib.asynccontextmanager
    async def start(**env: str):
        base = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LLM_ENDPOINT": openai_server.url,
                "LLM_MODEL": "test-model", "COOKIE_SECURE": "false", "LOG_LEVEL": "WARNING"}
        async with serving_async({**base, **env}, tmp_path) as server:
            yield server

    return start


def _address(server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


async def _bad_logins(http: httpx.AsyncClient, username: str, forwarded_for: list[str]) -> list[int]:
    statuses = []
    for address in forwarded_for:
        response = await http.post(LOGIN, json={"username": username, "password": "wrong-guess"},
                                   headers={"X-Forwarded-For": address})
        statuses.append(response.status_code)
    return statuses


async def test_x_forwarded_for_is_ignored_unless_a_proxy_is_configured(serve, make_user, settings):
    user = await make_user()
    rotating = [f"198.51.100.{i}" for i in range(settings.login_max_failures + 3)]
    async with serve() as server, httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        statuses = await _bad_logins(http, user.username, rotating)
    assert statuses[: settings.login_max_failures] == [401] * settings.login_max_failures
    assert statuses[settings.login_max_failures:] == [429] * 3, statuses


async def test_a_configured_proxy_s_x_forwarded_for_is_the_client(serve, make_user, settings):
    """Behind an ingress every client shares its address: with FORWARDED_ALLOW_IPS the throttle sees the real
    client, so one guesser is stopped without locking the account for everyone."""
    user = await make_user()
    guesser = ["203.0.113.7"] * (settings.login_max_failures + 1)
    async with serve(FORWARDED_ALLOW_IPS="127.0.0.1") as server, httpx.AsyncClient(
        base_url=server.base_url, timeout=30
    ) as http:
        statuses = await _bad_logins(http, user.username, guesser)
        owner = await http.post(LOGIN, json={"username": user.username, "password": user.password},
                                headers={"X-Forwarded-For": "192.0.2.44"})
    assert statuses[-1] == 429, statuses
    assert owner.status_code == 200, owner.text


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    while chunk := await reader.read(65536):
        received += chunk
    return received


async def _trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(TRICKLE_PAUSE)


async def _trickled_request_is_cut_off(server, prefix: bytes, trickled: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*_address(server))
    try:
        writer.write(prefix)
        await writer.drain()
        trickling = asyncio.create_task(_trickle(writer, trickled))
        try:
            return await asyncio.wait_for(_read_until_closed(reader), CUT_OFF_WITHIN)
        finally:
            trickling.cancel()
    finally:
        writer.close()


async def test_trickled_headers_are_cut_off(serve):
    request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n"
    async with serve(HEADER_TIMEOUT_SECONDS="2") as server:
        answer = await _trickled_request_is_cut_off(server, b"", request)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        async with httpx.AsyncClient(base_url=server.base_url) as http:  # everyone else is served as usual
            assert (await http.get("/health/live")).status_code == 200


async def test_a_trickled_body_is_cut_off(serve):
    body = b'{"username": "someone", "password": "' + b"p" * 500 + b'"}'
    head = (f"POST {LOGIN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    async with serve(BODY_TIMEOUT_SECONDS="2") as server:
        answer = await _trickled_request_is_cut_off(server, head, body)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get("/health/live")).status_code == 200


async def test_a_huge_header_is_refused(serve):
    async with serve() as server:
        reader, writer = await asyncio.open_connection(*_address(server))
        answer, sent_all = b"", False
        try:
            with contextlib.suppress(ConnectionError):
                writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
                for _ in range(8 * 16):  # 8 MB in 64 KiB pieces
                    writer.write(b"a" * 65536)
                    await writer.drain()
                writer.write(b"\r\n\r\n")
                await writer.drain()
                sent_all = True
            with contextlib.suppress(ConnectionError):
                answer = await asyncio.wait_for(_read_until_closed(reader), CUT_OFF_WITHIN)
        finally:
            writer.close()
        # Refused with a 400/431, or the connection closed on us before the 8 MB were all in.
        assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")) or (not sent_all and not answer), answer[:200]
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get("/health/live", headers={"X-Fine": "a" * 8000})).status_code == 200


async def _exchange(server, data: bytes, timeout: float = CUT_OFF_WITHIN) -> bytes:
    """Send `data` at once and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection(*_address(server))
    try:
        writer.write(data)
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            return await asyncio.wait_for(_read_until_closed(reader), timeout)
        return b""
    finally:
        writer.close()


async def test_headers_over_the_limit_get_431_however_they_are_split(serve):
    async with serve(MAX_HEADER_BYTES="4096") as server:
        one_big = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
        many_small = (b"GET /health/live HTTP/1.1\r\nHost: x\r\n"
                      + b"".join(b"X-H%d: %s\r\n" % (n, b"b" * 50) for n in range(100)) + b"\r\n")
        for request in (one_big, many_small):
            answer = await _exchange(server, request)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
            assert b"Request headers too large." in answer
        # Just under the limit, with a body in the same packet: served.
        body = b'{"username": "nobody", "password": "' + b"p" * 1000 + b'"}'
        fits = (f"POST {LOGIN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                f"X-Pad: {'c' * 3000}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        answer = await _exchange(server, fits)
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


async def test_kept_alive_connections_are_served_and_each_request_gets_its_own_deadline(serve):
    """The header deadline starts again with each request on a kept-alive connection: a connection idle for
    longer than it between two requests is still served, and a trickled second request is cut off."""
    async with serve(HEADER_TIMEOUT_SECONDS="1", BODY_TIMEOUT_SECONDS="1") as server:
        reader, writer = await asyncio.open_connection(*_address(server))
        try:
            request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
            for _ in range(2):
                writer.write(request)
                await writer.drain()
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                assert head.startswith(b"HTTP/1.1 200 "), head
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
                await asyncio.sleep(2)  # idle past the header and body deadlines (uvicorn's keep-alive is 5 s)
            trickling = asyncio.create_task(_trickle(writer, request))
            try:
                answer = await asyncio.wait_for(_read_until_closed(reader), CUT_OFF_WITHIN)
            finally:
                trickling.cancel()
            assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        finally:
            writer.close()


async def test_pipelined_requests_and_a_body_in_pieces_within_the_deadline_are_served(serve):
    async with serve(BODY_TIMEOUT_SECONDS="3") as server:
        pipelined = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + \
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = await _exchange(server, pipelined)
        assert answer.count(b"HTTP/1.1 200 ") == 3, answer[:500]

        body = b'{"username": "nobody", "password": "not-it"}'
        head = (f"POST {LOGIN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        reader, writer = await asyncio.open_connection(*_address(server))
        try:
            writer.write(head)
            for piece in (body[:10], body[10:30], body[30:]):  # 1.5 s in all, within the 3 s
                await asyncio.sleep(0.5)
                writer.write(piece)
                await writer.drain()
            answer = await asyncio.wait_for(_read_until_closed(reader), CUT_OFF_WITHIN)
        finally:
            writer.close()
        assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
