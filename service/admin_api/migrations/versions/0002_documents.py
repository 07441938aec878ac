"""Documents: the user's uploaded files with their ingestion state, and each answer's sources.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE "USR_DOC" (
        "DOC_ID"      bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT "USR_DOC_pkey" PRIMARY KEY,
        "DOC_IDT_ID"  varchar(64) NOT NULL CONSTRAINT "USR_DOC_DOC_IDT_ID_key" UNIQUE,
        "USR_ID"      bigint NOT NULL CONSTRAINT "USR_DOC_USR_ID_fkey" REFERENCES "USR_ACCT" ("USR_ID"),
        "FILE_NM"     varchar(255) NOT NULL,
        "CNTN_TYPE"   varchar(100) NOT NULL,
        "FILE_SZ"     bigint NOT NULL,
        "OBJ_KEY"     text NOT NULL,
        "STTS_CD"     varchar(16) NOT NULL DEFAULT 'processing'
            CHECK ("STTS_CD" IN ('processing', 'ready', 'failed')),
        "ERR_MSG"     text,
        "CHNK_CNT"    integer NOT NULL DEFAULT 0,
        -- The vector collection the chunks are in (model and vector size): another one means reindex.
        "IDX_KEY"     text,
        -- Ingestion claims: whoever holds an unexpired lease works on the document; a crashed worker's
        -- lease runs out and another worker takes the document again.
        "LEASE_TOKEN" varchar(64),
        "LEASE_UNTIL" timestamptz,
        "ATTEMPTS"    integer NOT NULL DEFAULT 0,
        "REG_DT"      timestamptz NOT NULL DEFAULT clock_timestamp(),
        "UPD_DT"      timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    # The list query: own documents, newest first, keyset on a unique tie-breaker.
    'CREATE INDEX idx_usr_doc_page ON "USR_DOC" ("USR_ID", "REG_DT" DESC, "DOC_IDT_ID" DESC)',
    # The workers' claim query only looks at documents still to be processed.
    """CREATE INDEX idx_usr_doc_pending ON "USR_DOC" ("REG_DT") WHERE "STTS_CD" = 'processing'""",
    # The chunks an answer was given (history/detail shows them); NULL for answers without documents.
    'ALTER TABLE "CNVS_MSG" ADD COLUMN "SRC_JSON" jsonb',
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute('ALTER TABLE "CNVS_MSG" DROP COLUMN "SRC_JSON"')
    op.execute('DROP TABLE "USR_DOC"')
