"""`admin-api serve` as the real process a pod runs, on a free loopback port, for the tests that need a
real server (SIGTERM handling, faults under load, the browser, the operator's health gate)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

START_TIMEOUT_SECONDS = 120  # generous: on a loaded shared machine the import alone can take tens of seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServeProcess:
    process: subprocess.Popen
    base_url: str
    stdout: Path
    stderr: Path

    def terminate(self) -> float:
        """SIGTERM, as the kubelet sends it; returns when it was sent."""
        self.process.send_signal(signal.SIGTERM)
        return time.monotonic()

    async def wait(self, timeout: float) -> int:
        return await asyncio.to_thread(self.process.wait, timeout)

    def log_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.read_text().splitlines()]  # every line must be JSON

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def serve_arguments() -> argparse.Namespace:
    """The `serve --host H --port P` command line that start_serve runs, for the programs it starts besides
    `admin-api serve` (the benchmarks' baselines and test servers)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args()


def start_serve(env: dict[str, str], log_dir: Path, module: str = "admin_api.cli") -> ServeProcess:
    """Start `admin-api serve` with exactly `env` (plus PATH, and PYTHONPATH: from another checkout, a git
    worktree, the server must run that checkout's admin_api) and wait until /health/live answers.
    `module`: another program with the same `serve --host --port` command line (the benchmarks' baselines)."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    server = ServeProcess(None, f"http://127.0.0.1:{port}", log_dir / "serve.stdout", log_dir / "serve.stderr")
    with server.stdout.open("w") as out, server.stderr.open("w") as err:
        server.process = subprocess.Popen(
            [sys.executable, "-m", module, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={**{name: os.environ[name] for name in ("PATH", "PYTHONPATH") if name in os.environ}, **env},
            stdout=out, stderr=err)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if server.process.poll() is not None:
            raise AssertionError(f"{module} serve exited: {server.stderr.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.base_url}/health/live", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"{module} serve did not answer /health/live within {START_TIMEOUT_SECONDS}s")
        time.sleep(0.1)


@contextmanager
def serving(env: dict[str, str], log_dir: Path) -> Iterator[ServeProcess]:
    server = start_serve(env, log_dir)
    try:
        yield server
    finally:
        server.stop()


@asynccontextmanager
async def serving_async(env: dict[str, str], log_dir: Path) -> AsyncIterator[ServeProcess]:
    server = await asyncio.to_thread(start_serve, env, log_dir)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
