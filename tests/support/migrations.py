"""A "next version" of the service's migrations, for tests: a copy of the package's alembic directory (its
real env.py and versions) with extra revisions, and the real `admin-api migrate` run against it.

    scripts = next_version(tmp_path, NEXT_REVISION)         # HEAD + next1 (a table with an FK, a column, ...)
    result = migrate(scripts, {"DATABASE_URL": url})        # the CLI's code path, only the script dir differs
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from admin_api.migrations import MIGRATIONS_DIR

# The package's head: the "next version" revisions below build on whatever the service ships today.
HEAD = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
NEXT = "next1"

# What a newer release might add on top of 0001: an extension (trusted: the database owner may create it), a
# schema with a table, a type, a table with a foreign key to USR_CNVS_SMRY (and its sequence), a column and
# indexes on USR_CNVS_SMRY, a standalone sequence, a view, a function, and rows.
NEXT_REVISION = f"""
# Next version: conversation tags.
from alembic import op

revision = "{NEXT}"
down_revision = "{HEAD}"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute('''CREATE INDEX idx_usr_cnvs_smry_ttl_trgm ON "USR_CNVS_SMRY" USING gin ("CNVS_TTL" gin_trgm_ops)''')
    op.execute("CREATE SCHEMA reporting")
    op.execute("CREATE TABLE reporting.daily (day date PRIMARY KEY, conversations bigint NOT NULL)")
    op.execute("CREATE TYPE tag_color AS ENUM ('red', 'green')")
    op.execute('''
        CREATE TABLE "CNVS_TAG" (
            "TAG_ID" bigserial PRIMARY KEY,
            "CNVS_IDT_ID" varchar(64) NOT NULL REFERENCES "USR_CNVS_SMRY" ("CNVS_IDT_ID") ON DELETE CASCADE,
            "TAG_NM" text NOT NULL,
            "COLOR" tag_color NOT NULL DEFAULT 'red')
    ''')
    op.execute('''ALTER TABLE "USR_CNVS_SMRY" ADD COLUMN "PINNED_YN" char(1) NOT NULL DEFAULT 'N' ''')
    op.execute('''CREATE INDEX idx_usr_cnvs_smry_pinned ON "USR_CNVS_SMRY" ("USR_ID", "PINNED_YN")''')
    op.execute("CREATE SEQUENCE tag_batch_seq START 100")
    op.execute('''CREATE VIEW tagged_conversations AS SELECT DISTINCT "CNVS_IDT_ID" FROM "CNVS_TAG"''')
    op.execute('''CREATE FUNCTION tag_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM "CNVS_TAG" $$''')
    op.execute('''INSERT INTO "CNVS_TAG" ("CNVS_IDT_ID", "TAG_NM") SELECT "CNVS_IDT_ID", 'tagged' FROM "USR_CNVS_SMRY"''')
    op.execute('''UPDATE "USR_CNVS_SMRY" SET "PINNED_YN" = 'Y' ''')


def downgrade() -> None:
    raise NotImplementedError
"""


def next_version(root: Path, *revisions: str) -> Path:
    """A script directory: the package's migrations plus `revisions` (module sources), as 9001_*.py, ..."""
    scripts = root / "migrations"
    shutil.copytree(MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    for number, source in enumerate(revisions, start=9001):
        (scripts / "versions" / f"{number}_next.py").write_text(source)
    return scripts


def python_env() -> dict[str, str]:
    """The basics of an environment for a child Python, PYTHONPATH included: run from another checkout (a git
    worktree), the child must import that checkout's admin_api, not the one the venv was installed from."""
    return {name: os.environ[name] for name in ("PATH", "HOME", "TMPDIR", "LANG", "PYTHONPATH") if name in os.environ}


def migrate(scripts: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`admin-api migrate`, the CLI's own code, with its script directory pointed at `scripts`."""
    program = (
        "import sys, pathlib, admin_api.migrations as migrations\n"
        "migrations.MIGRATIONS_DIR = pathlib.Path(sys.argv[1])\n"
        "from admin_api.cli import main\n"
        "sys.exit(main(['migrate']))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", program, str(scripts)],
        env={**python_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
