"""A real S3-compatible server for tests: SeaweedFS (Apache-2.0), built from the Go module pinned in
hack/s3/go.mod, started on loopback with generated credentials.

    def test_x(s3_server):
        s3_server.endpoint, s3_server.access_key, s3_server.secret_key   # host:port and the keys
        s3_server.client().list_buckets()                               # a minio.Minio for it

As a pytest plugin this module gives the session fixture `s3_server`. The binary is built once into
${ADMINAPI_CACHE:-~/.cache/admin-api}/seaweedfs-<version>/weed, before the first test runs (a cold build
takes minutes and shows its progress); the server runs for the session with its data in a temporary
directory, and is stopped at the end.

ADMINAPI_TEST_S3_ENDPOINT=host:port (with ADMINAPI_TEST_S3_ACCESS_KEY, ADMINAPI_TEST_S3_SECRET_KEY and
optionally ADMINAPI_TEST_S3_SECURE=1) runs the tests against that S3 server instead; tests create buckets of
their own there. Without Go and without such an endpoint, the tests that need S3 skip with one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3
from minio import Minio

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = REPO_ROOT / "hack" / "s3" / "build.sh"
FIXTURE = "s3_server"
NO_TOOLCHAIN = "S3 server unavailable: no `go` on PATH to build SeaweedFS (or set ADMINAPI_TEST_S3_ENDPOINT)"
START_TIMEOUT = 90


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port, as MINIO_ENDPOINT takes it
    access_key: str
    secret_key: str
    secure: bool = False

    def client(self, retries: int = 1) -> Minio:
        # Few retries: tests want an answer, not patience.
        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60), retries=retries)
        return Minio(
            self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=self.secure, http_client=http
        )

    def env(self, bucket: str) -> dict[str, str]:
        """The MINIO_* variables that point the service at this server and `bucket`."""
        return {
            "MINIO_ENDPOINT": self.endpoint,
            "MINIO_ACCESS_KEY": self.access_key,
            "MINIO_SECRET_KEY": self.secret_key,
            "MINIO_BUCKET": bucket,
            "MINIO_SECURE": "true" if self.secure else "false",
        }


def _external() -> S3Server | None:
    endpoint = os.environ.get("ADMINAPI_TEST_S3_ENDPOINT", "").strip()
    if not endpoint:
        return None
    return S3Server(
        endpoint,
        os.environ.get("ADMINAPI_TEST_S3_ACCESS_KEY", ""),
        os.environ.get("ADMINAPI_TEST_S3_SECRET_KEY", ""),
        os.environ.get("ADMINAPI_TEST_S3_SECURE", "").lower() in ("1", "true", "yes"),
    )


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open together while choosing, so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _answers(server: S3Server) -> bool:
    with contextlib.suppress(Exception):
        server.client(retries=0).list_buckets()
        return True
    return False


# --- building, before any test runs ----------------------------------------------------------------

_build_failure: str | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds SeaweedFS before the first test (first run only): outside every test's timeout, with its
    progress shown live."""
    global _build_failure
    config = session.config
    if config.option.collectonly or _external() is not None or shutil.which("go") is None:
        return
    if not any(FIXTURE in getattr(item, "fixturenames", ()) for item in session.items):
        return
    if subprocess.run([str(BUILD_SH), "--check"], capture_output=True).returncode == 0:
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("building SeaweedFS, the tests' S3 server (first run only; hack/s3/build.sh)")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        build = subprocess.run([str(BUILD_SH)], stdout=subprocess.DEVNULL)  # progress on stderr, live
    if build.returncode != 0:
        _build_failure = f"hack/s3/build.sh failed (exit {build.returncode}); its output is above the test results"


# --- the server -------------------------------------------------------------------------------------


@contextlib.contextmanager
def run_seaweedfs(weed: str, root: Path) -> Iterator[S3Server]:
    """`weed server -s3` (master, volume server, filer and S3 gateway in one process) on loopback."""
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    # Fresh keys each session (never the guide's sample ones).
    server = S3Server(f"127.0.0.1:{s3}", "T" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30))
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin-api-tests",
                        "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    data = root / "data"
    data.mkdir()
    command = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",  # it would report to the internet
        "-master.volumeSizeLimitMB=64",  # small volumes: sparse files in the tests' temp dir
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        # Each bucket is a collection that takes volumes of its own (7 at its first write): at 64, the 10th
        # bucket with data in a session was refused. Volumes are sparse files, so a high bound costs nothing.
        "-volume.max=2000",
        "-volume.preStopSeconds=0",  # no grace period for load balancers at shutdown
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={root / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-s3.config={config}",
    ]
    log_path = root / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(server):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-4000:]
                state = f"exited with {process.returncode}" if process.poll() is not None else "did not answer"
                raise RuntimeError(f"SeaweedFS {state} within {START_TIMEOUT}s; the end of its log:\n{tail}")
            time.sleep(0.2)
        yield server
    finally:
        # Killed, not stopped: its graceful shutdown waits on itself for 10 s or more, and the data is
        # thrown away anyway.
        process.kill()
        process.wait()
        # weed puts its gRPC sockets in /tmp whatever we say; a killed one leaves them behind.
        grpc_ports = {"master": master_grpc, "volume": volume_grpc, "filer": filer_grpc, "s3": s3_grpc}
        for name, port in grpc_ports.items():
            Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3 server for the session: SeaweedFS started here, or ADMINAPI_TEST_S3_ENDPOINT's."""
    external = _external()
    if external is not None:
        if not _answers(external):
            pytest.fail(f"ADMINAPI_TEST_S3_ENDPOINT={external.endpoint}: no S3 server answers there", pytrace=False)
        yield external
        return
    if shutil.which("go") is None and subprocess.run([str(BUILD_SH), "--check"], capture_output=True).returncode:
        pytest.skip(NO_TOOLCHAIN)
    if _build_failure:
        pytest.fail(_build_failure, pytrace=False)
    build = subprocess.run([str(BUILD_SH)], capture_output=True, text=True)  # already built: just the path
    if build.returncode != 0:
        pytest.fail(f"hack/s3/build.sh failed:\n{build.stderr[-4000:]}", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="admin-api-s3-") as root, contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(run_seaweedfs(build.stdout.strip(), Path(root)))
        except RuntimeError as error:
            pytest.fail(str(error), pytrace=False)
        yield server
