"""The local models' speed on this machine (`make bench`): what the demo and the documents tests can expect.

- Embeddings: passages per second through /v1/embeddings (the openai SDK, batches of 32), against the same
  ONNX model run in this process on the same passages (the wire's cost).
- LLM: time to the first streamed token and tokens per second as the client sees them, against llama.cpp's
  own generation speed for the same request (its `timings`).
"""

from __future__ import annotations

import importlib.util
import statistics
import time

import httpx
import openai
import pytest

from tests.bench.retrieval_set import corpus_passages
from tests.support.models import MODELS_DIR

pytestmark = [pytest.mark.bench, pytest.mark.timeout(900)]

BATCH = 32


def _in_process_embedder():
    spec = importlib.util.spec_from_file_location("embeddings_server", MODELS_DIR / "embeddings_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from weights import MINILM_ONNX, MINILM_TOKENIZER, verified  # on sys.path once the module is loaded

    return module.Embedder(verified(MINILM_ONNX), verified(MINILM_TOKENIZER), threads=1)


async def test_embeddings_throughput(embeddings_server):
    passages = corpus_passages(64)  # ~200 tokens each (the model reads at most 256)
    embedder = _in_process_embedder()
    embedder.embed(embedder.token_ids(passages[:4]))  # warm up
    started = time.perf_counter()
    for start in range(0, len(passages), BATCH):
        embedder.embed(embedder.token_ids(passages[start : start + BATCH]))
    in_process = len(passages) / (time.perf_counter() - started)

    client = openai.AsyncOpenAI(base_url=embeddings_server.url, api_key="unused", max_retries=0, timeout=300)
    await client.embeddings.create(model=embeddings_server.model, input=passages[:4])
    started = time.perf_counter()
    tokens = 0
    for start in range(0, len(passages), BATCH):
        response = await client.embeddings.create(model=embeddings_server.model, input=passages[start : start + BATCH])
        tokens += response.usage.prompt_tokens
    served = len(passages) / (time.perf_counter() - started)
    await client.close()
    print(f"\nembeddings: {served:.1f} passages/s over /v1/embeddings ({tokens // len(passages)} tokens each, "
          f"batches of {BATCH}); in process {in_process:.1f} passages/s; ratio {served / in_process:.2f}")


async def test_llm_first_token_and_speed(local_llm):
    first_tokens, client_speeds, server_speeds = [], [], []
    async with httpx.AsyncClient(base_url=local_llm.url, timeout=300) as http:
        for question in ("Name three colours.", "What is a database?", "Say hello to a new user."):
            body = {"model": local_llm.model, "stream": True, "max_tokens": 48, "temperature": 0,
                    "messages": [{"role": "user", "content": question}]}
            started = time.perf_counter()
            first = None
            pieces = 0
            timings = None
            async with http.stream("POST", "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = httpx.Response(200, content=line[6:]).json()
                    if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                        pieces += 1
                        first = first or time.perf_counter()
                    timings = chunk.get("timings") or timings
            ended = time.perf_counter()
            first_tokens.append(first - started)
            client_speeds.append((pieces - 1) / (ended - first))
            server_speeds.append(timings["predicted_per_second"])
    print(f"\nllm: first token {statistics.median(first_tokens):.2f} s (median of 3; "
          f"{min(first_tokens):.2f}-{max(first_tokens):.2f}), {statistics.median(client_speeds):.1f} tokens/s "
          f"seen by the client; llama.cpp's own {statistics.median(server_speeds):.1f} tokens/s; "
          f"ratio {statistics.median(client_speeds) / statistics.median(server_speeds):.2f}")
