"""Versioned schema migrations (alembic), applied by `admin-api migrate`.

`upgrade(database_url)` runs them programmatically: no alembic.ini to ship, and the URL never goes
through alembic's config-file interpolation. env.py takes a PostgreSQL advisory lock first, so
replicas that start at the same moment apply each migration exactly once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent
# Any fixed 64-bit number, the same in every replica: "admin-api migrate" serializes on it.
ADVISORY_LOCK_KEY = 0x61646D696E617069  # "adminapi"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`. Runs its own event loop: call it from a thread inside async code."""
    command.upgrade(alembic_config(database_url), revision)
