"""Bounded work off the event loop: at most `limit` calls at once in threads of their own, at most
`max_waiting` more queued, none queued longer than `wait_seconds`. Past the bounds a caller is refused at
once (Saturated) instead of piling up: a flood of logins is refused fast, and argon2 never takes every
core from the requests of everyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Saturated(Exception):
    """No room now; retry after `retry_after` seconds."""

    retry_after = 1


class BoundedWork:
    def __init__(self, *, name: str, limit: int, max_waiting: int, wait_seconds: float) -> None:
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix=name)
        self._capacity = limit + max_waiting
        self._wait_seconds = wait_seconds
        self._admitted = 0  # running or queued; only touched on the event loop

    async def run(self, function: Callable[..., T], *args: object) -> T:
        if self._admitted >= self._capacity:
            raise Saturated()
        loop = asyncio.get_running_loop()
        self._admitted += 1
        future = self._executor.submit(function, *args)
        # Counted until the thread is really done, even if the request waiting on it is cancelled.
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._finished))
        result = asyncio.wrap_future(future)
        try:
            return await asyncio.wait_for(asyncio.shield(result), self._wait_seconds)
        except TimeoutError:
            if future.cancel():  # still queued: give up its place
                raise Saturated() from None
            return await result  # already running: it finishes soon

    def _finished(self) -> None:
        self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
