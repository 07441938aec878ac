"""Database backups to S3-compatible object storage: `admin-api backup` and `admin-api restore`.

    service.py   backup (streamed, read back, then marked complete), restore, keys and retention
    postgres.py  the client tools: pg_dump as a stream, the whole-database restore in one transaction
    storage.py   the bucket, through the S3 API
"""


class BackupError(Exception):
    """A failure worth one line to the operator (never a traceback, never a secret)."""

    exit_code = 1


class ConfigurationError(BackupError):
    """Something to fix in the environment (a missing tool, a bad setting): exit code 2 like bad usage."""

    exit_code = 2
