"""SQL for the "USR_ACCT" table."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

Executor = asyncpg.Pool | asyncpg.Connection


class UsernameTaken(Exception):
    pass


@dataclass(frozen=True)
class UserRecord:
    id: int
    username: str
    is_admin: bool
    password_hash: str = field(repr=False)


async def find_active_user(db: Executor, username: str) -> UserRecord | None:
    row = await db.fetchrow(
        'SELECT "USR_ID", "USR_NM", "PWD_HASH", "ADMIN_YN" FROM "USR_ACCT" WHERE "USR_NM" = $1 AND "USE_YN" = \'Y\'',
        username,
    )
    if row is None:
        return None
    return UserRecord(
        id=row["USR_ID"], username=row["USR_NM"], is_admin=row["ADMIN_YN"] == "Y", password_hash=row["PWD_HASH"]
    )


async def insert_user(db: Executor, *, username: str, password_hash: str, is_admin: bool) -> int:
    try:
        return await db.fetchval(
            'INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH", "ADMIN_YN") VALUES ($1, $2, $3) RETURNING "USR_ID"',
            username,
            password_hash,
            "Y" if is_admin else "N",
        )
    except asyncpg.UniqueViolationError:
        raise UsernameTaken(username) from None


async def insert_user_if_absent(db: Executor, *, username: str, password_hash: str, is_admin: bool) -> bool:
    """True when the user was created; safe when several replicas run it at once."""
    user_id = await db.fetchval(
        'INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH", "ADMIN_YN") VALUES ($1, $2, $3) '
        'ON CONFLICT ("USR_NM") DO NOTHING RETURNING "USR_ID"',
        username,
        password_hash,
        "Y" if is_admin else "N",
    )
    return user_id is not None


async def update_password_hash(db: Executor, *, user_id: int, password_hash: str) -> None:
    await db.execute('UPDATE "USR_ACCT" SET "PWD_HASH" = $2 WHERE "USR_ID" = $1', user_id, password_hash)
