"""Alembic environment: async engine (the URL is postgresql+asyncpg://), one transaction for all
pending migrations, serialized across replicas by a transaction-level advisory lock.

One transaction (PostgreSQL's DDL is transactional): if any pending migration fails, none of them stays,
alembic_version included. So migrations must not use op.get_context().autocommit_block() (e.g. for
CREATE INDEX CONCURRENTLY): it would commit what came before it. `admin-api restore` takes the same lock."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from admin_api.migrations import ADVISORY_LOCK_KEY, Ahead

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=None, transactional_ddl=True, transaction_per_migration=False
    )
    with context.begin_transaction():
        # Taken before alembic reads alembic_version: a replica that waited here then sees the
        # migrations the other one committed, and has nothing left to do. Released at commit.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        ahead = _ahead()
        if ahead is not None:  # alembic would fail on it ("Can't locate revision"): a rolled-back newer version's
            config.attributes["ahead"] = ahead
            return
        context.run_migrations()


def _ahead() -> Ahead | None:
    script = context.script
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = tuple(head for head in context.get_context().get_current_heads() if head not in known)
    return Ahead(revisions=unknown, heads=tuple(script.get_heads())) if unknown else None


async def run_async() -> None:
    engine = create_async_engine(config.attributes["database_url"], poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("admin-api migrations run online only (admin-api migrate)")
asyncio.run(run_async())
