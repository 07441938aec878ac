"""Initial schema: users, conversations ("USR_CNVS_SMRY", with the deployment guide's indexes), messages.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE "USR_ACCT" (
        "USR_ID"    bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT "USR_ACCT_pkey" PRIMARY KEY,
        "USR_NM"    varchar(64) NOT NULL CONSTRAINT "USR_ACCT_USR_NM_key" UNIQUE,
        "PWD_HASH"  text NOT NULL,
        "ADMIN_YN"  char(1) NOT NULL DEFAULT 'N' CHECK ("ADMIN_YN" IN ('Y', 'N')),
        "USE_YN"    char(1) NOT NULL DEFAULT 'Y' CHECK ("USE_YN" IN ('Y', 'N')),
        "REG_DT"    timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE "USR_CNVS_SMRY" (
        "CNVS_SMRY_ID" bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT "USR_CNVS_SMRY_pkey" PRIMARY KEY,
        "CNVS_IDT_ID"  varchar(64) NOT NULL CONSTRAINT "USR_CNVS_SMRY_CNVS_IDT_ID_key" UNIQUE,
        "USR_ID"       bigint NOT NULL CONSTRAINT "USR_CNVS_SMRY_USR_ID_fkey" REFERENCES "USR_ACCT" ("USR_ID"),
        "CNVS_TTL"     varchar(200) NOT NULL,
        "USE_YN"       char(1) NOT NULL DEFAULT 'Y' CHECK ("USE_YN" IN ('Y', 'N')),
        "REG_DT"       timestamptz NOT NULL DEFAULT now(),
        "UPD_DT"       timestamptz NOT NULL DEFAULT now()
    )
    """,
    # The deployment guide's three named indexes (the first duplicates the unique constraint's
    # index, but operators check for it by name).
    'CREATE INDEX idx_usr_cnvs_smry_cnvs_idt_id ON "USR_CNVS_SMRY" ("CNVS_IDT_ID")',
    'CREATE INDEX idx_usr_cnvs_smry_use_yn ON "USR_CNVS_SMRY" ("USE_YN")',
    'CREATE INDEX idx_usr_cnvs_smry_usr_id_reg_dt ON "USR_CNVS_SMRY" ("USR_ID", "REG_DT" DESC)',
    # History paging: exactly the list query's filter and order, with a unique tie-breaker, so both
    # offset and keyset pages are read in index order with no sort.
    """
    CREATE INDEX idx_usr_cnvs_smry_page ON "USR_CNVS_SMRY" ("USR_ID", "REG_DT" DESC, "CNVS_IDT_ID" DESC)
    WHERE "USE_YN" = 'Y'
    """,
    """
    CREATE TABLE "CNVS_MSG" (
        "MSG_ID"      bigint GENERATED ALWAYS AS IDENTITY CONSTRAINT "CNVS_MSG_pkey" PRIMARY KEY,
        "MSG_IDT_ID"  varchar(64) NOT NULL CONSTRAINT "CNVS_MSG_MSG_IDT_ID_key" UNIQUE,
        "CNVS_IDT_ID" varchar(64) NOT NULL
            CONSTRAINT "CNVS_MSG_CNVS_IDT_ID_fkey" REFERENCES "USR_CNVS_SMRY" ("CNVS_IDT_ID"),
        "ROLE_CD"     varchar(16) NOT NULL CHECK ("ROLE_CD" IN ('user', 'assistant')),
        "MSG_CN"      text NOT NULL,
        "STTS_CD"     varchar(16) NOT NULL DEFAULT 'complete' CHECK ("STTS_CD" IN ('complete', 'failed')),
        "REG_DT"      timestamptz NOT NULL DEFAULT now()
    )
    """,
    'CREATE INDEX idx_cnvs_msg_cnvs_idt_id_msg_id ON "CNVS_MSG" ("CNVS_IDT_ID", "MSG_ID")',
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute('DROP TABLE "CNVS_MSG"')
    op.execute('DROP TABLE "USR_CNVS_SMRY"')
    op.execute('DROP TABLE "USR_ACCT"')
