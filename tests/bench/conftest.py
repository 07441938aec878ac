"""Fixtures of `make bench`: the service, its baselines and the LLM each as a real server process on loopback;
this pytest process is the load generator. The figures go into one report, printed and written at the end.

    bench_report    add Figures; printed as one table and written to .run/bench.json after the session
    bench_database  a fresh, migrated and seeded database (PostgreSQL of tests/support/services.py): a copy of a
                    template seeded once (1,000,000 conversations take minutes to insert, a copy seconds)
    llm             the OpenAI-wire test server, a process of its own (tests/bench/llm_server.py)
    service         `admin-api serve` on that database, Redis and LLM
    bare            the baseline app (tests/bench/bare_app.py) on the same settings and backing services
    unwrapped       the service's app without its middleware on its own server (tests/bench/unwrapped_app.py)
    documents_env   service's settings with documents on: S3 (SeaweedFS), the local embedding model, an
                    embedded Qdrant store of the session's own (QDRANT_PATH)
    documents_service  `admin-api serve` on documents_env (a process of its own: `service` stays as it was)
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from admin_api.migrations import MIGRATIONS_DIR, upgrade
from tests.bench import seed
from tests.bench.report import Report
from tests.support.serve import ServeProcess, start_serve
from tests.support.services import REPO_ROOT, RUN_DIR, PostgresServer, _lock

LOG_DIR = RUN_DIR / "bench"


@pytest.fixture(scope="session")
def bench_report() -> Iterator[Report]:
    report = Report(RUN_DIR / "bench.json")
    yield report
    if report.figures:
        report.write()
        print(f"\n\nmake bench: each figure against a baseline measured in the same run ({report.path})\n")
        print(report.table())


def _template_name() -> str:
    """Named after what it holds: the migrations and the seeding code (a change of either seeds anew)."""
    digest = hashlib.sha256(inspect.getsource(seed).encode())
    for path in sorted(MIGRATIONS_DIR.glob("versions/*.py")):
        digest.update(path.read_bytes())
    return f"bench_template_{digest.hexdigest()[:12]}"


async def _ensure_template(postgres: PostgresServer) -> str:
    name = _template_name()
    if postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == "1":
        return name
    for old in postgres.psql("SELECT datname FROM pg_database WHERE datname LIKE 'bench_template_%'").split():
        postgres.drop_database(old)
    building = f"{name}_building"
    postgres.drop_database(building)
    postgres.create_database(building)
    await asyncio.to_thread(upgrade, postgres.url(building))
    conn = await asyncpg.connect(postgres.dsn(building))
    try:
        await seed.seed(conn)
    finally:
        await conn.close()
    postgres.psql(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
    return name


@pytest.fixture(scope="session")
async def bench_database(postgres_server: PostgresServer) -> Iterator[str]:
    with _lock("bench-template"):
        template = await _ensure_template(postgres_server)
        name = f"bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        postgres_server.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    await asyncio.to_thread(upgrade, postgres_server.url(name))  # nothing to do unless migrations changed
    yield postgres_server.url(name)
    postgres_server.drop_database(name)


def _start(name: str, env: dict[str, str], module: str) -> ServeProcess:
    # This checkout's service first: the .venv's editable install points at the main checkout, and a bench run
    # from a git worktree must measure the worktree's code.
    path = os.pathsep.join(str(part) for part in (REPO_ROOT / "service", REPO_ROOT / "operator", REPO_ROOT))
    return start_serve({"PYTHONPATH": path, **env}, LOG_DIR / name, module=module)


@pytest.fixture(scope="session")
def llm() -> Iterator[ServeProcess]:
    server = _start("llm", {}, "tests.bench.llm_server")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server_env(bench_database: str, redis_url: str, llm: ServeProcess) -> dict[str, str]:
    return {
        "DATABASE_URL": bench_database,
        "REDIS_URL": redis_url,
        "LLM_ENDPOINT": f"{llm.base_url}/v1",
        "LLM_MODEL": "test-model",
        "COOKIE_SECURE": "false",  # plain http on loopback
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),  # as deployed: one line per API request
        # The benchmarks measure load, not abuse: hundreds of sends by one user would meet the per-user limits
        # (30 a minute, 3 at once) and time 429s. The limit checks still run on every send, so their cost counts.
        "CHAT_RATE_LIMIT": "1000000",
        "CHAT_MAX_CONCURRENT": "1000",
    }


@pytest.fixture(scope="session")
def service(server_env: dict[str, str]) -> Iterator[ServeProcess]:
    server = _start("service", server_env, "admin_api.cli")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bare(server_env: dict[str, str]) -> Iterator[ServeProcess]:
    server = _start("bare", server_env, "tests.bench.bare_app")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def unwrapped(server_env: dict[str, str]) -> Iterator[ServeProcess]:
    server = _start("unwrapped", server_env, "tests.bench.unwrapped_app")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def documents_env(server_env: dict[str, str], s3_server, embeddings_server, tmp_path_factory) -> dict[str, str]:
    return {
        **server_env,
        **s3_server.env(f"bench-{uuid.uuid4().hex[:12]}"),
        "EMBEDDING_MODEL_ENDPOINT": embeddings_server.url,
        "EMBEDDING_MODEL": embeddings_server.model,
        "QDRANT_PATH": str(tmp_path_factory.mktemp("bench-qdrant")),
    }


@pytest.fixture(scope="session")
def documents_service(documents_env: dict[str, str]) -> Iterator[ServeProcess]:
    server = _start("documents", documents_env, "admin_api.cli")
    yield server
    server.stop()
