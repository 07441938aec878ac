"""SQL for documents ("USR_DOC"). Every user-facing query names the owner: another user's document is
simply not found. The workers' queries go by the lease token they hold, so a document that was deleted
or taken over by another worker is never written by a stale one."""

from __future__ import annotations

from datetime import datetime

import asyncpg

COLUMNS = (
    '"DOC_IDT_ID", "USR_ID", "FILE_NM", "CNTN_TYPE", "FILE_SZ", "OBJ_KEY", "STTS_CD", "ERR_MSG", '
    '"CHNK_CNT", "IDX_KEY", "ATTEMPTS", "REG_DT"'
)
_ORDER = 'ORDER BY "REG_DT" DESC, "DOC_IDT_ID" DESC'


async def insert(
    conn: asyncpg.Connection,
    *,
    doc_idt_id: str,
    user_id: int,
    filename: str,
    content_type: str,
    size: int,
    object_key: str,
) -> asyncpg.Record:
    return await conn.fetchrow(
        f"""
        INSERT INTO "USR_DOC" ("DOC_IDT_ID", "USR_ID", "FILE_NM", "CNTN_TYPE", "FILE_SZ", "OBJ_KEY")
        VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}
        """,
        doc_idt_id,
        user_id,
        filename,
        content_type,
        size,
        object_key,
    )


async def find(conn: asyncpg.Connection, doc_idt_id: str, user_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f'SELECT {COLUMNS} FROM "USR_DOC" WHERE "DOC_IDT_ID" = $1 AND "USR_ID" = $2', doc_idt_id, user_id
    )


async def list_page(
    conn: asyncpg.Connection, user_id: int, limit: int, after: tuple[datetime, str] | None
) -> list[asyncpg.Record]:
    if after is None:
        return await conn.fetch(f'SELECT {COLUMNS} FROM "USR_DOC" WHERE "USR_ID" = $1 {_ORDER} LIMIT $2', user_id, limit)
    return await conn.fetch(
        f"""SELECT {COLUMNS} FROM "USR_DOC" WHERE "USR_ID" = $1 AND ("REG_DT", "DOC_IDT_ID") < ($2, $3)
        {_ORDER} LIMIT $4""",
        user_id,
        after[0],
        after[1],
        limit,
    )


async def delete(conn: asyncpg.Connection, doc_idt_id: str, user_id: int) -> asyncpg.Record | None:
    """Remove the row (the worker, if one holds it, notices its lease is gone); returns what it was."""
    return await conn.fetchrow(
        f'DELETE FROM "USR_DOC" WHERE "DOC_IDT_ID" = $1 AND "USR_ID" = $2 RETURNING {COLUMNS}', doc_idt_id, user_id
    )


async def owned_ids(conn: asyncpg.Connection, doc_idt_ids: list[str], user_id: int) -> set[str]:
    rows = await conn.fetch(
        'SELECT "DOC_IDT_ID" FROM "USR_DOC" WHERE "DOC_IDT_ID" = ANY($1::varchar[]) AND "USR_ID" = $2',
        doc_idt_ids,
        user_id,
    )
    return {row["DOC_IDT_ID"] for row in rows}


async def ready_documents(conn: asyncpg.Connection, doc_idt_ids: list[str], user_id: int) -> dict[str, asyncpg.Record]:
    """Of these ids, the caller's documents that are ready now: retrieval keeps only their chunks, so a
    chunk of a document deleted (or being re-ingested) a moment ago never reaches a prompt."""
    rows = await conn.fetch(
        f"""SELECT {COLUMNS} FROM "USR_DOC"
        WHERE "DOC_IDT_ID" = ANY($1::varchar[]) AND "USR_ID" = $2 AND "STTS_CD" = 'ready'""",
        doc_idt_ids,
        user_id,
    )
    return {row["DOC_IDT_ID"]: row for row in rows}


async def ready_index_keys(conn: asyncpg.Connection, user_id: int, doc_idt_ids: list[str] | None) -> set[str]:
    """The vector collections the caller's ready documents (all, or these) were indexed into."""
    rows = await conn.fetch(
        """SELECT DISTINCT "IDX_KEY" FROM "USR_DOC" WHERE "USR_ID" = $1 AND "STTS_CD" = 'ready'
        AND ($2::varchar[] IS NULL OR "DOC_IDT_ID" = ANY($2::varchar[]))""",
        user_id,
        doc_idt_ids,
    )
    return {row["IDX_KEY"] for row in rows if row["IDX_KEY"]}


# ---- the workers -------------------------------------------------------------------------------------

CLAIM_SQL = f"""
UPDATE "USR_DOC" SET "LEASE_TOKEN" = $1, "LEASE_UNTIL" = clock_timestamp() + make_interval(secs => $2),
    "ATTEMPTS" = "ATTEMPTS" + 1, "UPD_DT" = clock_timestamp()
WHERE "DOC_ID" = (
    SELECT "DOC_ID" FROM "USR_DOC"
    WHERE "STTS_CD" = 'processing' AND ("LEASE_UNTIL" IS NULL OR "LEASE_UNTIL" < clock_timestamp())
    ORDER BY "REG_DT"
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING {COLUMNS}
"""


async def claim(conn: asyncpg.Connection, token: str, lease_seconds: float) -> asyncpg.Record | None:
    """Take the oldest document nobody works on (never one another worker holds), or None."""
    return await conn.fetchrow(CLAIM_SQL, token, float(lease_seconds))


async def renew(conn: asyncpg.Connection, doc_idt_id: str, token: str, lease_seconds: float) -> bool:
    """Extend our lease; False when the document is gone (deleted) or no longer ours."""
    return (
        await conn.fetchval(
            """UPDATE "USR_DOC" SET "LEASE_UNTIL" = clock_timestamp() + make_interval(secs => $3)
            WHERE "DOC_IDT_ID" = $1 AND "LEASE_TOKEN" = $2 AND "STTS_CD" = 'processing' RETURNING 1""",
            doc_idt_id,
            token,
            float(lease_seconds),
        )
        is not None
    )


async def mark_ready(conn: asyncpg.Connection, doc_idt_id: str, token: str, chunks: int, index_key: str) -> bool:
    return (
        await conn.fetchval(
            """UPDATE "USR_DOC" SET "STTS_CD" = 'ready', "CHNK_CNT" = $3, "IDX_KEY" = $4, "ERR_MSG" = NULL,
                "LEASE_TOKEN" = NULL, "LEASE_UNTIL" = NULL, "UPD_DT" = clock_timestamp()
            WHERE "DOC_IDT_ID" = $1 AND "LEASE_TOKEN" = $2 AND "STTS_CD" = 'processing' RETURNING 1""",
            doc_idt_id,
            token,
            chunks,
            index_key,
        )
        is not None
    )


async def mark_failed(conn: asyncpg.Connection, doc_idt_id: str, token: str | None, reason: str) -> bool:
    """Record why; `token` None: whoever held it is gone (e.g. it crashed on this document every time)."""
    return (
        await conn.fetchval(
            """UPDATE "USR_DOC" SET "STTS_CD" = 'failed', "ERR_MSG" = $3, "CHNK_CNT" = 0, "IDX_KEY" = NULL,
                "LEASE_TOKEN" = NULL, "LEASE_UNTIL" = NULL, "UPD_DT" = clock_timestamp()
            WHERE "DOC_IDT_ID" = $1 AND "STTS_CD" = 'processing'
                AND ($2::varchar IS NULL OR "LEASE_TOKEN" = $2) RETURNING 1""",
            doc_idt_id,
            token,
            reason,
        )
        is not None
    )


async def release(conn: asyncpg.Connection, doc_idt_id: str, token: str) -> None:
    """Give the document back untouched (we are shutting down): another worker takes it at once."""
    await conn.execute(
        """UPDATE "USR_DOC" SET "LEASE_TOKEN" = NULL, "LEASE_UNTIL" = NULL, "ATTEMPTS" = greatest("ATTEMPTS" - 1, 0)
        WHERE "DOC_IDT_ID" = $1 AND "LEASE_TOKEN" = $2""",
        doc_idt_id,
        token,
    )


async def requeue_all(conn: asyncpg.Connection) -> int:
    """`admin-api reindex`: every document (ready or failed) is processed again from its original."""
    result = await conn.execute(
        """UPDATE "USR_DOC" SET "STTS_CD" = 'processing', "ERR_MSG" = NULL, "LEASE_TOKEN" = NULL,
            "LEASE_UNTIL" = NULL, "ATTEMPTS" = 0, "UPD_DT" = clock_timestamp()"""
    )
    return int(result.split()[-1])


async def count_other_index(conn: asyncpg.Connection, index_key: str) -> int:
    return await conn.fetchval(
        """SELECT count(*) FROM "USR_DOC" WHERE "STTS_CD" = 'ready' AND "IDX_KEY" IS DISTINCT FROM $1""", index_key
    )


async def retry_later(conn: asyncpg.Connection, doc_idt_id: str, token: str, delay_seconds: float) -> None:
    """A passing failure (the embedding model down, say): nobody takes the document for a while."""
    await conn.execute(
        """UPDATE "USR_DOC" SET "LEASE_TOKEN" = NULL, "LEASE_UNTIL" = clock_timestamp() + make_interval(secs => $3)
        WHERE "DOC_IDT_ID" = $1 AND "LEASE_TOKEN" = $2""",
        doc_idt_id,
        token,
        float(delay_seconds),
    )


async def exists(conn: asyncpg.Connection, doc_idt_id: str) -> bool:
    return await conn.fetchval('SELECT 1 FROM "USR_DOC" WHERE "DOC_IDT_ID" = $1', doc_idt_id) is not None


async def lock_for_delete(conn: asyncpg.Connection, doc_idt_id: str, user_id: int) -> asyncpg.Record | None:
    """The caller's document, locked until the transaction ends: a worker finishing it meanwhile waits,
    then finds it gone."""
    return await conn.fetchrow(
        f'SELECT {COLUMNS} FROM "USR_DOC" WHERE "DOC_IDT_ID" = $1 AND "USR_ID" = $2 FOR UPDATE',
        doc_idt_id,
        user_id,
    )
