"""What the app holds while it runs: built in the lifespan (main.py), handed to routes by core.deps."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis

from admin_api.auth.sessions import SessionStore
from admin_api.core.bounded import BoundedWork
from admin_api.core.metrics import Metrics
from admin_api.settings import Settings


@dataclass
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    metrics: Metrics
    llm: Any  # the chat package's LLM client (admin_api.chat.llm)
    documents: Any = None  # admin_api.documents.runtime.Documents, or None when documents are not configured
    # Set when the server begins to shut down (`admin-api serve`: on SIGTERM, before uvicorn's graceful wait;
    # otherwise when the lifespan ends): readiness turns 503, open streams and waits on the LLM end.
    shutting_down: asyncio.Event = field(default_factory=asyncio.Event)
    # Password hashing (auth.service): bounded, so a login flood is refused fast instead of starving the rest.
    password_checks: BoundedWork = field(init=False)
    sessions: SessionStore = field(init=False)  # auth.sessions: looked up on every authenticated request

    def __post_init__(self) -> None:
        self.sessions = SessionStore(
            self.redis, idle_seconds=self.settings.session_idle_seconds, max_seconds=self.settings.session_max_seconds
        )
        self.password_checks = BoundedWork(
            name="password-check",
            limit=self.settings.login_hash_concurrency,
            max_waiting=self.settings.login_hash_queue,
            wait_seconds=self.settings.login_hash_wait_seconds,
        )
