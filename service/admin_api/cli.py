"""`admin-api`: the service's console script.

    admin-api serve [--host H] [--port P]              run the API (uvicorn)
    admin-api migrate                                   apply pending migrations, all in one transaction
                                                        (+ bootstrap admin); a database a newer version
                                                        migrated is left as it is (exit 0)
    admin-api create-user USERNAME [--admin] --password-stdin
    admin-api backup --namespace NS --instance NAME [--key NS/NAME/...] [--retention N]
                                                        pg_dump into object storage; prints one JSON line
    admin-api restore s3://BUCKET/KEY                   make the database exactly that backup's; one JSON line
    admin-api reindex                                   re-ingest every document from its stored original
                                                        (after EMBEDDING_MODEL changed); the service's workers do it

Exit codes: 0 ok, 1 the command failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from admin_api.backup import BackupError
from admin_api.settings import BackupSettings, DatabaseSettings, Settings, describe_config_error

if TYPE_CHECKING:  # the web stack is imported by `serve` only: the other commands start faster without it
    from fastapi import FastAPI

# Below Kubernetes' default terminationGracePeriodSeconds (30), so in-flight requests get to finish
# and the process still exits before it is killed.
GRACEFUL_SHUTDOWN_SECONDS = 20

log = logging.getLogger("admin_api.cli")


class CommandError(Exception):
    """A failure worth one line to the operator, not a traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except ValidationError as error:
        print(f"admin-api: configuration error: {describe_config_error(error)}", file=sys.stderr)
        return 2
    except CommandError as error:
        print(f"admin-api: {error}", file=sys.stderr)
        return 1
    except BackupError as error:
        print(f"admin-api {args.command_name}: {error}", file=sys.stderr)
        return error.exit_code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="admin-api", description="AI Streams Admin API chat service.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="command_name")

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8001, help="port to listen on (default 8001)")
    serve.set_defaults(command=serve_command)

    migrate = commands.add_parser(
        "migrate", help="apply all pending database migrations in one transaction (safe to run concurrently)"
    )
    migrate.set_defaults(command=migrate_command)

    create_user = commands.add_parser("create-user", help="create a user; the password is read from stdin")
    create_user.add_argument("username")
    create_user.add_argument("--admin", action="store_true", help="make the user an administrator")
    create_user.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from standard input"
    )
    create_user.set_defaults(command=create_user_command)

    backup = commands.add_parser(
        "backup", help="dump the database into object storage (MINIO_*), print one JSON line describing it"
    )
    backup.add_argument(
        "--namespace", required=True, type=_namespace_name, metavar="NS", help="the instance's namespace"
    )
    backup.add_argument(
        "--instance", required=True, type=_instance_name, metavar="NAME", help="the instance the backup is of"
    )
    backup.add_argument(
        "--key", help="object key, under NS/NAME/ (default: NS/NAME/<UTC time>-<version>.dump)"
    )
    backup.add_argument(
        "--retention",
        type=_positive_int,
        metavar="N",
        help="then keep only the newest N complete backups of this instance (NS/NAME)",
    )
    backup.set_defaults(command=backup_command)

    restore = commands.add_parser("restore", help="restore a backup into DATABASE_URL (checksum verified first)")
    restore.add_argument("location", type=_location, help="s3://BUCKET/KEY, as printed by `admin-api backup`")
    restore.set_defaults(command=restore_command)

    reindex = commands.add_parser(
        "reindex", help="queue every document to be indexed again from its original (e.g. after a model change)"
    )
    reindex.set_defaults(command=reindex_command)
    return parser


def _instance_name(value: str) -> str:
    from admin_api.backup.service import validate_instance

    try:
        return validate_instance(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _namespace_name(value: str) -> str:
    from admin_api.backup.service import validate_namespace

    try:
        return validate_namespace(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of at least 1")
    return int(value)


def _location(value: str) -> str:
    from admin_api.backup.storage import parse_location

    try:
        parse_location(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def serve_command(args: argparse.Namespace) -> int:
    from admin_api.core.logging import configure_logging
    from admin_api.main import create_app

    settings = Settings()
    configure_logging(settings.log_level)
    run_server(create_app(settings), settings, host=args.host, port=args.port)
    return 0


def run_server(app: FastAPI, settings: Settings, *, host: str, port: int) -> None:
    """`app` on uvicorn with the service's server defences (core.server) and shutdown (the benchmarks serve a
    variant of the app with it)."""
    import uvicorn

    from admin_api.core.server import guarded_httptools
    from admin_api.main import begin_shutdown

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # Tell the app first, before uvicorn's graceful wait: readiness turns 503 and open streams end.
            # This runs as a signal handler: call_soon_threadsafe is signal-safe and wakes the event loop.
            asyncio.get_running_loop().call_soon_threadsafe(begin_shutdown, app)
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        **SERVER_OPTIONS,
        # X-Forwarded-For only from the proxies in FORWARDED_ALLOW_IPS; none by default (uvicorn's own
        # default trusts loopback, which lets a same-host client choose its address).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        http=guarded_httptools(
            header_timeout=settings.header_timeout_seconds,
            body_timeout=settings.body_timeout_seconds,
            max_header_bytes=settings.max_header_bytes,
        ),
    )
    Server(config).run()


# uvicorn's settings shared by `serve` and the benchmarks' baseline apps.
SERVER_OPTIONS = {
    "log_config": None,  # our JSON logging, configured by serve_command
    "access_log": False,  # RequestMiddleware logs each request, with its id
    "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
}


def migrate_command(args: argparse.Namespace) -> int:
    from admin_api.core.logging import configure_logging
    from admin_api.migrations import upgrade

    settings = DatabaseSettings()
    configure_logging(settings.log_level)
    bootstrap = _bootstrap_admin(settings)
    try:
        ahead = upgrade(settings.database_url)  # all pending migrations in one transaction
    except Exception as error:
        reason = _explain_migration_error(error, settings)
        raise CommandError(f"migrate failed, nothing was applied: {reason}") from None
    if ahead is not None:
        # After a rollback that kept the newer version's database: this version runs on it (migrations are
        # additive), so its pods must start rather than fail at their init container.
        print(ahead.describe(), flush=True)
    else:
        log.info("migrations applied")
    if bootstrap is not None:
        username, password = bootstrap
        created = _run_db(_create_user(settings, username, password, is_admin=True, if_absent=True))
        log.info("bootstrap admin %s", "created" if created else "already present")
    return 0


def create_user_command(args: argparse.Namespace) -> int:
    from admin_api.auth.repository import UsernameTaken
    from admin_api.auth.service import validate_new_user

    settings = DatabaseSettings()
    password = _read_password()
    try:
        validate_new_user(args.username, password)
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        user_id = _run_db(_create_user(settings, args.username, password, is_admin=args.admin, if_absent=False))
    except UsernameTaken:
        raise CommandError(f"user {args.username!r} already exists") from None
    print(f"created {'admin ' if args.admin else ''}user {args.username!r} (id {user_id})")
    return 0


def backup_command(args: argparse.Namespace) -> int:
    from admin_api.backup.service import backup

    result = backup(BackupSettings(), args.namespace, args.instance, key=args.key, retention=args.retention)
    print(json.dumps(result.as_dict()), flush=True)
    return 0


def restore_command(args: argparse.Namespace) -> int:
    from admin_api.backup.service import restore

    result = restore(BackupSettings(), args.location)
    print(json.dumps(result.as_dict()), flush=True)
    return 0


def reindex_command(args: argparse.Namespace) -> int:
    """Only the queue changes here: the running service's ingestion workers (any replica) rebuild each
    document under the configured model, which the embedded index needs (it serves one process only)."""
    settings = DatabaseSettings()
    count = _run_db(_requeue_documents(settings))
    print(f"queued {count} document(s) to be indexed again; they show status 'processing' until the service's "
          "ingestion workers have rebuilt them")
    return 0


async def _requeue_documents(settings: DatabaseSettings) -> int:
    from admin_api.documents import repository

    connection = await asyncpg.connect(settings.asyncpg_dsn, timeout=10)
    try:
        return await repository.requeue_all(connection)
    finally:
        await connection.close()


def _read_password() -> str:
    if sys.stdin.isatty():  # typed by hand: prompt without echo
        return getpass.getpass("Password: ")
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


def _bootstrap_admin(settings: DatabaseSettings) -> tuple[str, str] | None:
    from admin_api.auth.service import validate_new_user

    username = settings.bootstrap_admin_username
    password = settings.bootstrap_admin_password.get_secret_value() if settings.bootstrap_admin_password else None
    if not username and not password:
        return None
    if not username or not password:
        missing = "BOOTSTRAP_ADMIN_USERNAME" if not username else "BOOTSTRAP_ADMIN_PASSWORD"
        raise CommandError(f"configuration error: {missing}: required when the other BOOTSTRAP_ADMIN_* is set")
    try:
        validate_new_user(username, password)
    except ValueError as error:
        raise CommandError(f"configuration error: BOOTSTRAP_ADMIN_*: {error}") from None
    return username, password


async def _create_user(
    settings: DatabaseSettings, username: str, password: str, *, is_admin: bool, if_absent: bool
) -> int | bool:
    from admin_api.auth import repository
    from admin_api.auth.service import hash_password

    password_hash = await asyncio.to_thread(hash_password, password)
    connection = await asyncpg.connect(settings.asyncpg_dsn, timeout=10)
    try:
        if if_absent:
            return await repository.insert_user_if_absent(
                connection, username=username, password_hash=password_hash, is_admin=is_admin
            )
        return await repository.insert_user(
            connection, username=username, password_hash=password_hash, is_admin=is_admin
        )
    finally:
        await connection.close()


def _run_db(coroutine):
    try:
        return asyncio.run(coroutine)
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        if isinstance(error, asyncpg.UndefinedTableError):
            raise CommandError("the schema is missing: run `admin-api migrate` first") from None
        raise CommandError(_explain_db_error(error)) from None


def _explain_migration_error(error: BaseException, settings: DatabaseSettings) -> str:
    """What the server (or the migration's code) said, on one line; connection failures as for every command."""
    root = _root_cause(error)
    if isinstance(root, (OSError, TimeoutError, asyncpg.InvalidPasswordError, asyncpg.InvalidCatalogNameError)):
        return _explain_db_error(error)
    message = " ".join(str(root).split())[:300]
    password = make_url(settings.database_url).password
    if password:
        message = message.replace(password, "***")
    return f"{type(root).__name__}: {message}" if message else type(root).__name__


def _root_cause(error: BaseException) -> BaseException:
    while getattr(error, "orig", None) is not None or error.__cause__ is not None:
        error = getattr(error, "orig", None) or error.__cause__
    return error


def _explain_db_error(error: BaseException) -> str:
    """Name the failure without echoing the URL (it holds the password)."""
    root = _root_cause(error)
    if isinstance(root, (OSError, TimeoutError)):
        return f"cannot reach the database ({type(root).__name__})"
    if isinstance(root, asyncpg.InvalidPasswordError):
        return "the database rejected the credentials in DATABASE_URL"
    if isinstance(root, asyncpg.InvalidCatalogNameError):
        return "the database named in DATABASE_URL does not exist"
    return f"database error ({type(root).__name__})"


if __name__ == "__main__":
    sys.exit(main())
