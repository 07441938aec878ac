"""The real local models of hack/models as processes, for the tests that need a real model behind the OpenAI
wire: `embeddings_server` (all-MiniLM-L6-v2, int8 ONNX, our FastAPI server) and `local_llm` (SmolLM2-135M on
llama.cpp's own server, which we did not write). Started once per session on free loopback ports.

    def test_x(embeddings_server):
        openai.OpenAI(base_url=embeddings_server.url, api_key="unused").embeddings.create(
            model=embeddings_server.model, input=["..."])
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.serve import free_port

MODELS_DIR = Path(__file__).resolve().parents[2] / "hack" / "models"
EMBEDDINGS_MODEL = "all-MiniLM-L6-v2-onnx-int8"
LLM_MODEL = "SmolLM2-135M-Instruct"
START_TIMEOUT_SECONDS = 120  # loading is a few seconds; generous for a machine under load


@dataclass
class ModelServer:
    process: subprocess.Popen
    url: str  # the OpenAI base URL, .../v1
    model: str
    log: Path

    @property
    def base_url(self) -> str:
        return self.url.removesuffix("/v1")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_model_server(script: str, model: str, log: Path, *args: str) -> ModelServer:
    """Run hack/models/<script> on a free loopback port; return once its /health answers 200."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, str(MODELS_DIR / script), "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT)
    server = ModelServer(process, f"http://127.0.0.1:{port}/v1", model, log)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{script} exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"{script} did not become healthy within {START_TIMEOUT_SECONDS}s")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def embeddings_server(tmp_path_factory) -> Iterator[ModelServer]:
    server = start_model_server(
        "embeddings_server.py", EMBEDDINGS_MODEL, tmp_path_factory.mktemp("embeddings") / "server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory) -> Iterator[ModelServer]:
    server = start_model_server("llm_server.py", LLM_MODEL, tmp_path_factory.mktemp("llm") / "server.log")
    yield server
    server.stop()
