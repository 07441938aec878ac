"""Versioned schema migrations (alembic), applied by `admin-api migrate`.

`upgrade(database_url)` runs them programmatically: no alembic.ini to ship, and the URL never goes
through alembic's config-file interpolation. env.py takes a PostgreSQL advisory lock first, so
replicas that start at the same moment apply each migration exactly once.

A database at a revision this version does not know was migrated by a newer version (then rolled back
without restoring the database): it is left as it is, as Flyway's ignoreFutureMigrations does, instead of
failing every restart of this version's pods at their init container. That is safe only because every
migration is additive and backward compatible: the previous version must keep working on the new schema.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Ahead:
    """The database is at revisions this version does not know: a newer version's."""

    revisions: tuple[str, ...]
    heads: tuple[str, ...]  # this version's

    def describe(self) -> str:
        return (
            f"database is at revision {', '.join(self.revisions)}, newer than this version knows "
            f"(head {', '.join(self.heads)}): left as it is"
        )


def upgrade(database_url: str, revision: str = "head") -> Ahead | None:
    """Apply migrations up to `revision`; or, on a database ahead of this version, nothing: say so (env.py
    decides under the lock). Runs its own event loop: call it from a thread inside async code."""
    config = alembic_config(database_url)
    command.upgrade(config, revision)
    return config.attributes.get("ahead")
