"""The asyncpg connection pool."""

from __future__ import annotations

import logging

import asyncpg

from admin_api.settings import Settings

log = logging.getLogger(__name__)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Replaces the pool's default reset on release (RESET ALL, UNLISTEN, CLOSE ALL, advisory unlocks: one
    more round trip per acquire) with nothing: the service never changes session state on pooled
    connections. asyncpg still rolls back a transaction left open before calling this."""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A pool that starts even while PostgreSQL is down: readiness reports it, and the pool
    reconnects by itself when the database comes back (min_size=0 means no connection at creation)."""
    pool = await asyncpg.create_pool(
        settings.asyncpg_dsn,
        min_size=0,
        max_size=settings.db_pool_max_size,
        timeout=5,  # seconds to open a connection
        command_timeout=30,  # no request waits on a hung query forever
        max_inactive_connection_lifetime=300,
        reset=_keep_session,
    )
    try:
        await pool.execute("SELECT 1")
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        log.warning("database not reachable at start-up: %s", type(exc).__name__)
    return pool
