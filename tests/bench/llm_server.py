"""The OpenAI-wire test server (tests/support/openai_server.py) as a process of its own, so that neither the
load generator nor the service shares a CPU-bound event loop (or the GIL) with it.

    python -m tests.bench.llm_server serve --host 127.0.0.1 --port PORT

Every completion answers at once with ANSWER (streamed one word per chunk); /health/live answers 200 so that
tests/support/serve.py can wait for it like for any other server.
"""

from __future__ import annotations

import uvicorn

from admin_api.cli import SERVER_OPTIONS
from tests.support.openai_server import OpenAIServer
from tests.support.serve import serve_arguments

# 32 words: 32 content chunks per stream, enough to see a per-token cost.
ANSWER = " ".join(f"word{n}" for n in range(32))


class BenchLLM:
    def __init__(self) -> None:
        self.server = OpenAIServer()
        self.server.script(answer=ANSWER)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/health/live":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.server.requests.clear()  # it records every request: do not grow without bound
        await self.server(scope, receive, send)


def main() -> None:
    args = serve_arguments()
    uvicorn.run(BenchLLM(), host=args.host, port=args.port, lifespan="off", **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
