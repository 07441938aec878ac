"""The data the history benchmarks read: 10,000 conversations of one user (the newest with 20 messages) in a
table of 1,000,000, and the users the benchmarks log in as. One INSERT ... SELECT generate_series each."""

from __future__ import annotations

import hashlib
import time
import uuid

import asyncpg

from admin_api.auth.service import hash_password

CONVERSATIONS = 1_000_000
USER_CONVERSATIONS = 10_000
FILLER_USERS = 1_000
DETAIL_MESSAGES = 20
CHAT_USERS = 50
HISTORY_USER = "history"
CHAT_USER_PREFIX = "chat-"
PASSWORD = "bench-password-1"  # of a throwaway benchmark database, never a default anywhere


def conversation_id(n: int) -> str:
    """The id the seed gives the n-th conversation (md5(n)::uuid in SQL)."""
    return str(uuid.UUID(hashlib.md5(str(n).encode()).hexdigest()))


NEWEST_CONVERSATION = conversation_id(USER_CONVERSATIONS)  # the history user's newest: the one with messages


async def seed(conn: asyncpg.Connection) -> None:
    started = time.perf_counter()
    password_hash = hash_password(PASSWORD)
    names = [HISTORY_USER] + [f"{CHAT_USER_PREFIX}{n}" for n in range(CHAT_USERS)]
    await conn.executemany('INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") VALUES ($1, $2)',
                           [(name, password_hash) for name in names])
    history_user = await conn.fetchval('SELECT "USR_ID" FROM "USR_ACCT" WHERE "USR_NM" = $1', HISTORY_USER)
    first_filler = await conn.fetchval(
        'INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") SELECT \'filler-\' || g, \'-\' '
        'FROM generate_series(1, $1) g RETURNING "USR_ID"', FILLER_USERS)
    # The user's 10,000 first (seconds 1..10,000 of 2025), then the others' spread over the filler users.
    await conn.execute(
        """
        INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL", "REG_DT", "UPD_DT")
        SELECT md5(g::text)::uuid::text,
               CASE WHEN g <= $2 THEN $3 ELSE $4 + g % $5 END,
               'Conversation ' || g,
               timestamptz '2025-01-01' + g * interval '1 second',
               timestamptz '2025-01-01' + g * interval '1 second'
        FROM generate_series(1, $1) g
        """,
        CONVERSATIONS, USER_CONVERSATIONS, history_user, first_filler, FILLER_USERS)
    await conn.execute(
        'INSERT INTO "CNVS_MSG" ("MSG_IDT_ID", "CNVS_IDT_ID", "ROLE_CD", "MSG_CN") '
        "SELECT md5('m' || g)::uuid::text, $1, CASE WHEN g % 2 = 1 THEN 'user' ELSE 'assistant' END, "
        "repeat('A sentence of a message. ', 8) FROM generate_series(1, $2) g",
        NEWEST_CONVERSATION, DETAIL_MESSAGES)
    await conn.execute("VACUUM ANALYZE")
    print(f"\nseeded the benchmark template: {CONVERSATIONS:,} conversations in {time.perf_counter() - started:.0f} s")
