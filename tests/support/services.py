"""Real PostgreSQL 15 and Redis on loopback, for the tests and for running the service by hand.

    python -m tests.support.services up     # start both (idempotent); state under <repo>/.run/
    python -m tests.support.services env    # print DATABASE_URL / REDIS_URL exports for the admin_db database
    python -m tests.support.services down   # stop both

PostgreSQL listens on 127.0.0.1:55432 (superuser `postgres`, a random password kept in
.run/postgres/password), Redis on 127.0.0.1:56379. Both come from Debian packages (postgresql-15,
redis-server). PostgreSQL refuses to run as root, so when we are root its commands run as the
`postgres` OS user.

As a pytest plugin this module gives session fixtures:
    postgres_url       postgresql+asyncpg:// URL of a fresh database for this test session (dropped after)
    redis_url          redis:// URL of a Redis database number of this session's own (flushed before and after)
    private_postgres   factory: a throwaway PostgreSQL server of the test's own (to stop and start it)
    private_redis      factory: a throwaway Redis server of the test's own
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = REPO_ROOT / ".run"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_OS_USER = "postgres"
# Overridable for a second checkout on the same machine.
POSTGRES_PORT = int(os.environ.get("ADMINAPI_POSTGRES_PORT", "55432"))
REDIS_PORT = int(os.environ.get("ADMINAPI_REDIS_PORT", "56379"))
ADMIN_DATABASE = "admin_db"  # the guide's database name, for `make run`
REDIS_TEST_DATABASES = 256  # each test session takes a database number of its own


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres_user(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_OS_USER, "--", *command]
    return command


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, PG_OS_USER, PG_OS_USER)


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """Serializes start-up between concurrent test sessions and `make services`."""
    RUN_DIR.mkdir(exist_ok=True)
    with open(RUN_DIR / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class PostgresServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.data_dir = root / "data"
        self.socket_dir = root / "socket"
        self.log_file = root / "postgresql.log"
        self.password_file = root / "password"

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return self.url(database).replace("postgresql+asyncpg://", "postgresql://", 1)

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialized():
            return
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL 15 not found in {PG_BIN}: apt-get install postgresql-15")
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        self.password_file.write_text(secrets.token_hex(16) + "\n")
        self.password_file.chmod(0o600)
        for path in (self.root, self.socket_dir, self.password_file):
            _chown_to_postgres(path)
        subprocess.run(
            _as_postgres_user(
                [
                    str(PG_BIN / "initdb"),
                    f"--pgdata={self.data_dir}",
                    "--username=postgres",
                    f"--pwfile={self.password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            # Test data is disposable: trade durability for speed.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\n# tests/support/services.py\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def running(self) -> bool:
        if not self.initialized():
            return False
        result = subprocess.run(
            _as_postgres_user([str(PG_BIN / "pg_ctl"), "status", "--pgdata", str(self.data_dir)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return result.returncode == 0

    def start(self) -> None:
        self.init()
        if self.running():
            return
        subprocess.run(
            _as_postgres_user(
                [str(PG_BIN / "pg_ctl"), "start", f"--pgdata={self.data_dir}", f"--log={self.log_file}", "--wait"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.running():
            subprocess.run(
                _as_postgres_user(
                    [str(PG_BIN / "pg_ctl"), "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait"]
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--dbname",
                self.dsn(database),
                "--command",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        self.psql(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class RedisServer:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port

    def url(self, database: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def _command(self, *words: str) -> bytes:
        request = f"*{len(words)}\r\n" + "".join(f"${len(w.encode())}\r\n{w}\r\n" for w in words)
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(request.encode())
            return sock.recv(1024)

    def running(self) -> bool:
        with contextlib.suppress(OSError):
            return self._command("PING").startswith(b"+PONG")
        return False

    def start(self) -> None:
        if self.running():
            return
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.root / "redis.pid"),
                "--logfile",
                str(self.root / "redis.log"),
                "--dir",
                str(self.root),
                "--save",
                "",
                "--appendonly",
                "no",
                "--databases",
                str(REDIS_TEST_DATABASES),
            ],
            check=True,
        )
        deadline = time.monotonic() + 20
        while not self.running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port}; see {self.root}/redis.log")
            time.sleep(0.05)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._command("SHUTDOWN", "NOSAVE")
        deadline = time.monotonic() + 10
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def shared_postgres() -> PostgresServer:
    return PostgresServer(RUN_DIR / "postgres", POSTGRES_PORT)


def shared_redis() -> RedisServer:
    return RedisServer(RUN_DIR / "redis", REDIS_PORT)


def up() -> tuple[PostgresServer, RedisServer]:
    postgres, redis = shared_postgres(), shared_redis()
    with _lock("services"):
        postgres.start()
        redis.start()
        if postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{ADMIN_DATABASE}'") != "1":
            postgres.create_database(ADMIN_DATABASE)
    return postgres, redis


def down() -> None:
    with _lock("services"):
        shared_redis().stop()
        shared_postgres().stop()


def env_lines() -> list[str]:
    postgres, redis = shared_postgres(), shared_redis()
    return [f"export DATABASE_URL='{postgres.url(ADMIN_DATABASE)}'", f"export REDIS_URL='{redis.url()}'"]


# --- pytest fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> PostgresServer:
    postgres, _ = up()
    return postgres


@pytest.fixture(scope="session")
def redis_server() -> RedisServer:
    _, redis = up()
    return redis


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for this test session."""
    name = f"test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(name)
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """A Redis database number of this session's own, so concurrent test runs do not share keys."""
    import redis

    allocator = redis.Redis.from_url(redis_server.url(0))
    database = 1 + allocator.incr("tests:next-database") % (REDIS_TEST_DATABASES - 1)
    allocator.close()
    client = redis.Redis.from_url(redis_server.url(database))
    client.flushdb()
    yield redis_server.url(database)
    client.flushdb()
    client.close()


def _private_servers(kind: type, name: str) -> Iterator[callable]:
    servers = []

    def start():
        server = kind(RUN_DIR / f"{name}-private-{os.getpid()}-{uuid.uuid4().hex[:6]}", _free_port())
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.destroy()


@pytest.fixture
def private_postgres() -> Iterator[callable]:
    """Start a PostgreSQL server of the test's own (free port), which the test may stop and start."""
    yield from _private_servers(PostgresServer, "postgres")


@pytest.fixture
def private_redis() -> Iterator[callable]:
    """Start a Redis server of the test's own (free port), which the test may stop and start."""
    yield from _private_servers(RedisServer, "redis")


def _main(argv: list[str]) -> int:
    action = argv[0] if argv else "up"
    if action == "up":
        postgres, redis = up()
        print(f"PostgreSQL on 127.0.0.1:{postgres.port}, Redis on 127.0.0.1:{redis.port} (state in {RUN_DIR})")
        print('their URLs (with the generated password): eval "$(.venv/bin/python -m tests.support.services env)"')
    elif action == "down":
        down()
    elif action == "env":
        print("\n".join(env_lines()))
    else:
        print("usage: python -m tests.support.services up|down|env", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
