#!/usr/bin/env python3
"""SmolLM2-135M-Instruct (GGUF Q4_1, sha256-verified) on llama.cpp's own HTTP server (the xllamacpp wheel),
which speaks OpenAI's wire: `POST /v1/chat/completions` (JSON and streaming), `GET /v1/models`, `GET /health`.

    python hack/models/llm_server.py [--host 127.0.0.1] [--port 8000] [--threads 1]

A small model for a demo that must answer offline on a laptop CPU: its answers are not good, its wire is real.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from weights import SMOLLM2_GGUF, WeightError, verified  # noqa: E402

MODEL_NAME = "SmolLM2-135M-Instruct"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for generation (default 1)")
    parser.add_argument("--ctx", type=int, default=8192, help="context window in tokens (the model's own: 8192)")
    parser.add_argument("--max-tokens", type=int, default=256, help="longest answer, unless a request asks less")
    parser.add_argument("--served-model-name", default=MODEL_NAME)
    parser.add_argument("--model-file", type=Path, help="a copy of the GGUF file (checked against the same sha256)")
    args = parser.parse_args()
    try:
        model_path = verified(SMOLLM2_GGUF, args.model_file)
    except WeightError as exc:
        print(f"llm server: {exc}", file=sys.stderr)
        return 2

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.model_alias = {args.served_model_name}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = 1  # one answer at a time: a second request waits instead of halving the speed of both
    params.n_predict = args.max_tokens
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.n_threads_http = 2
    params.ui = False  # no web UI: only the API
    params.offline = True  # never reach for a model hub
    params.warmup = True

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server = xllamacpp.Server(params)  # returns once the model is loaded and the port listens
    print(f"llm server: {args.served_model_name} (weights sha256-verified) on {server.listening_address}/v1",
          flush=True)
    stop.wait()
    del server
    return 0


if __name__ == "__main__":
    sys.exit(main())
