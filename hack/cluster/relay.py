"""Makes servers that listen on loopback reachable from the real node's pods: a TCP relay from the
node's bridge address to 127.0.0.1 (PostgreSQL, Redis and the S3 server of tests/support bind
loopback only, and pods cannot reach the host's loopback).

    python hack/cluster/relay.py 10.244.0.1 55432 56379 8333   # each port: bridge:port -> 127.0.0.1:port

As a module: `with relay("10.244.0.1", [55432]):` runs it in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterable, Iterator


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _handler(port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def serve(host: str, ports: Iterable[int], started: threading.Event | None = None,
                stop: asyncio.Event | None = None) -> None:
    servers = [await asyncio.start_server(_handler(p), host, p, reuse_address=True) for p in ports]
    if started is not None:
        started.set()
    try:
        await (stop.wait() if stop is not None else asyncio.Event().wait())
    finally:
        for server in servers:
            server.close()
        # open connections end with the relay
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)


@contextlib.contextmanager
def relay(host: str, ports: Iterable[int]) -> Iterator[None]:
    """Relays host:port -> 127.0.0.1:port for each port while the block runs."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            loop.run_until_complete(serve(host, list(ports), started, stop))
        except BaseException as exc:  # reported to the caller below
            errors.append(exc)
            started.set()

    thread = threading.Thread(target=run, name="bridge-relay", daemon=True)
    thread.start()
    started.wait(10)
    if errors:
        raise errors[0]
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: relay.py LISTEN_ADDRESS PORT...")
    asyncio.run(serve(sys.argv[1], [int(p) for p in sys.argv[2:]]))
