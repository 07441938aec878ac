"""A real HTTP server speaking OpenAI's wire format, for tests.

It runs uvicorn in a background thread on 127.0.0.1 (random port) and serves:
  POST /v1/chat/completions  JSON (with usage) or, with "stream": true, SSE chunks ending in `data: [DONE]`
  POST /v1/embeddings        deterministic vectors: hashed bag of words, L2-normalised, so texts that share
                             words are near (`embedding_dimensions` per model; failures and holds scriptable)
  GET  /v1/models

Each test scripts how the next answers behave (text, delays, held until released, HTTP errors, a dropped
connection, a vLLM-style `data: {"error": ...}` chunk after a 200) and reads back what the server received,
including whether the client went away before the answer was complete (that is how a test proves upstream
cancellation).

    def test_x(openai_server):
        openai_server.script(answer="Hi there", chunk_delay=0.05)
        openai_server.queue(status=503)            # only the next request fails, then the script applies
        ...
        assert openai_server.requests[-1].messages[-1]["content"] == "hello"

The server runs on its own event loop in another thread: tests wait for it with the async helpers
(`wait_for_requests`, `wait_until`) rather than sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import socket
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import uvicorn

DEFAULT_MODEL = "test-model"
DEFAULT_ANSWER = "Hello from the test LLM."
DEFAULT_EMBEDDING_DIMENSIONS = 64
_WORDS = re.compile(r"\w+")

Answer = str | Callable[["RecordedRequest"], str]


@dataclass(frozen=True)
class Script:
    """How one chat completion is answered."""

    answer: Answer = DEFAULT_ANSWER
    # Stream pieces; by default the answer is cut after each space, so pieces join back to the answer.
    chunks: tuple[str, ...] | None = None
    first_byte_delay: float = 0.0  # seconds before the status line (a slow model, or a timeout test)
    chunk_delay: float = 0.0  # seconds between stream chunks
    hold: bool = False  # wait before the first byte until the test calls release()
    hold_after: int | None = None  # stream: after this many content chunks, wait until the test calls release()
    status: int = 200  # != 200: answer an OpenAI-style error body with this status
    error_message: str = "The test server was told to fail."
    error_type: str = "server_error"
    break_after: int | None = None  # stream: drop the connection after this many content chunks
    error_chunk_after: int | None = None  # stream: send a vLLM-style `data: {"error": ...}` after N chunks
    raw_answer: str | None = None  # a 200 whose body (JSON) or one event's data (stream) is this text, as it is

    def answer_for(self, request: RecordedRequest) -> str:
        return self.answer(request) if callable(self.answer) else self.answer

    def pieces_for(self, request: RecordedRequest) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return _split_keeping_spaces(self.answer_for(request))


@dataclass
class RecordedRequest:
    """What the server received, and what became of the answer."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float = field(default_factory=time.monotonic)
    completed: bool = False  # the whole answer was sent
    disconnected: bool = False  # the client went away before the answer was complete

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def temperature(self) -> float | None:
        return self.body.get("temperature")

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


class _DropConnection(Exception):
    """Raised after the response started: uvicorn then closes the socket mid-body."""


class OpenAIServer:
    """The ASGI app plus the scripting and recording state shared with the test thread."""

    def __init__(self) -> None:
        self.url = ""  # http://127.0.0.1:PORT/v1, set by start()
        self.requests: list[RecordedRequest] = []
        self._default = Script()
        self._queued: deque[Script] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        # Embeddings: vector size per model name (others get the default), statuses for the next calls,
        # and a hold (until release_embeddings()) to catch an ingestion in the middle.
        self.embedding_dimensions: dict[str, int] = {}
        self._embedding_failures: deque[int] = deque()
        self._embedding_hold = False
        self._embedding_gate = asyncio.Event()
        self._routes: dict[tuple[str, str], Callable[..., Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): self._chat_completions,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
        }

    # ---- scripting (called from tests) -------------------------------------------------------------

    def script(self, **changes: Any) -> None:
        """Set how every following request is answered (until reset)."""
        with self._lock:
            self._default = replace(Script(), **_as_script_fields(changes))

    def queue(self, **changes: Any) -> None:
        """Answer only the next not-yet-scripted request this way (one-shot, first in first out)."""
        with self._lock:
            self._queued.append(replace(self._default, **_as_script_fields(changes)))

    def release(self) -> None:
        """Let requests scripted with hold=True go on."""
        if self._loop is None:  # no request has reached the server yet: nobody waits on the gate
            self._gate.set()
        else:
            self._loop.call_soon_threadsafe(self._gate.set)

    def fail_embeddings(self, *statuses: int) -> None:
        """Answer the next embeddings requests with these HTTP statuses, in order."""
        with self._lock:
            self._embedding_failures.extend(statuses)

    def hold_embeddings(self) -> None:
        """Embeddings requests wait (before answering) until release_embeddings()."""
        self._embedding_hold = True
        self._embedding_gate = asyncio.Event()

    def release_embeddings(self) -> None:
        self._embedding_hold = False
        if self._loop is None:
            self._embedding_gate.set()
        else:
            self._loop.call_soon_threadsafe(self._embedding_gate.set)

    def reset(self) -> None:
        with self._lock:
            self._default = Script()
            self._queued.clear()
            self.requests.clear()
            self._gate = asyncio.Event()
            self.embedding_dimensions.clear()
            self._embedding_failures.clear()
            self._embedding_hold = False
            self._embedding_gate = asyncio.Event()

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/embeddings"]

    def embed(self, text: str, model: str = DEFAULT_MODEL) -> list[float]:
        """The vector this server gives `text` (tests use it to reason about what retrieval finds)."""
        return _bag_of_words(text, self.embedding_dimensions.get(model, DEFAULT_EMBEDDING_DIMENSIONS))

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll a condition on the recorded state from the test's event loop."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"openai test server: condition not met within {timeout}s")
            await asyncio.sleep(0.01)

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        await self.wait_until(lambda: len(self.chat_requests) >= count, timeout)
        return self.chat_requests

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            http="h11",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="openai-test-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("openai test server did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    # ---- ASGI ----------------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        handler = self._routes.get((scope["method"], scope["path"]))
        if handler is None:
            await _send_json(send, 404, _error_body("Not found", "invalid_request_error", 404))
            return
        raw_body = await _read_body(receive)
        try:
            body = json.loads(raw_body) if raw_body else {}
        except ValueError:
            await _send_json(send, 400, _error_body("Invalid JSON", "invalid_request_error", 400))
            return
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        self.requests.append(record)
        await self._answer_unless_client_leaves(handler(record, _marking_completed(send, record)), record, receive)

    async def _answer_unless_client_leaves(
        self, answering: Awaitable[None], record: RecordedRequest, receive: Callable
    ) -> None:
        # Like vLLM: when the client goes away, the generation is aborted (and we note it for the test).
        answer_task = asyncio.ensure_future(answering)
        watch_task = asyncio.ensure_future(_wait_for_disconnect(receive))
        done, _ = await asyncio.wait({answer_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        if answer_task in done:
            watch_task.cancel()
            answer_task.result()  # re-raises _DropConnection so uvicorn cuts the socket
            return
        if not record.completed:  # the last byte went out before the client left: that answer was whole
            record.disconnected = True
        answer_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await answer_task

    def _next_script(self) -> Script:
        with self._lock:
            return self._queued.popleft() if self._queued else self._default

    async def _wait_before_first_byte(self, script: Script) -> None:
        if script.hold:
            await self._gate.wait()
        if script.first_byte_delay:
            await asyncio.sleep(script.first_byte_delay)

    async def _models(self, record: RecordedRequest, send: Callable) -> None:
        model = {"id": DEFAULT_MODEL, "object": "model", "created": int(time.time()), "owned_by": "test"}
        await _send_json(send, 200, {"object": "list", "data": [model]})

    async def _embeddings(self, record: RecordedRequest, send: Callable) -> None:
        if self._embedding_hold:
            await self._embedding_gate.wait()
        with self._lock:
            failure = self._embedding_failures.popleft() if self._embedding_failures else None
        if failure is not None:
            await _send_json(send, failure, _error_body("The test server was told to fail.", "server_error", failure))
            return
        inputs = record.body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(item, str) for item in inputs):
            await _send_json(send, 400, _error_body("input must be a string or a list of strings", "invalid_request_error", 400))
            return
        model = record.model or DEFAULT_MODEL
        data = [
            {"object": "embedding", "index": index, "embedding": self.embed(text, model)}
            for index, text in enumerate(inputs)
        ]
        tokens = sum(len(text.split()) for text in inputs)
        await _send_json(
            send,
            200,
            {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
        )

    async def _chat_completions(self, record: RecordedRequest, send: Callable) -> None:
        script = self._next_script()
        await self._wait_before_first_byte(script)
        if script.status != 200:
            body = _error_body(script.error_message, script.error_type, script.status)
            await _send_json(send, script.status, body)
            return
        if script.raw_answer is not None:
            await self._raw_answer(script.raw_answer, record, send)
        elif record.stream:
            await self._stream_completion(script, record, send)
        else:
            await _send_json(send, 200, _completion(record, script.answer_for(record)))

    async def _raw_answer(self, raw: str, record: RecordedRequest, send: Callable) -> None:
        if not record.stream:
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw.encode())).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": raw.encode(), "more_body": False})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for data in (json.dumps(_chunk("chatcmpl-raw", DEFAULT_MODEL, {"role": "assistant", "content": ""})), raw, "[DONE]"):
            await send({"type": "http.response.body", "body": f"data: {data}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream_completion(self, script: Script, record: RecordedRequest, send: Callable) -> None:
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        model = record.model or DEFAULT_MODEL
        pieces = script.pieces_for(record)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )

        async def event(data: Any) -> None:
            payload = data if isinstance(data, str) else json.dumps(data)
            await send({"type": "http.response.body", "body": f"data: {payload}\n\n".encode(), "more_body": True})

        await event(_chunk(completion_id, model, {"role": "assistant", "content": ""}))
        for sent, piece in enumerate(pieces):
            if script.break_after is not None and sent >= script.break_after:
                raise _DropConnection()
            if script.hold_after is not None and sent == script.hold_after:
                await self._gate.wait()
            if script.error_chunk_after is not None and sent >= script.error_chunk_after:
                await event({"error": _error_body(script.error_message, script.error_type, 500)["error"]})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if script.chunk_delay:
                await asyncio.sleep(script.chunk_delay)
            await event(_chunk(completion_id, model, {"content": piece}))
        await event(_chunk(completion_id, model, {}, finish_reason="stop"))
        if (record.body.get("stream_options") or {}).get("include_usage"):
            usage = _usage(record, "".join(pieces))
            await event(_chunk(completion_id, model, None, usage=usage))
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# ---- wire format helpers -----------------------------------------------------------------------------


def _completion(record: RecordedRequest, answer: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": record.model or DEFAULT_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(record, answer),
    }


def _chunk(
    completion_id: str,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _usage(record: RecordedRequest, answer: str) -> dict[str, int]:
    # Word counts stand in for tokens: deterministic, and good enough to prove usage is passed on.
    prompt = sum(len(str(m.get("content", "")).split()) for m in record.messages)
    completion = len(answer.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _bag_of_words(text: str, dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    for word in _WORDS.findall(text.lower()):
        vector[zlib.crc32(word.encode()) % dimensions] += 1.0
    norm = math.sqrt(sum(value * value for value in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return [value / norm for value in vector]


def _error_body(message: str, error_type: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


def _split_keeping_spaces(text: str) -> list[str]:
    words = text.split(" ")
    return [word + " " for word in words[:-1]] + ([words[-1]] if words[-1] else [])


def _as_script_fields(changes: dict[str, Any]) -> dict[str, Any]:
    if "chunks" in changes and changes["chunks"] is not None:
        changes = {**changes, "chunks": tuple(changes["chunks"])}
    return changes


async def _read_body(receive: Callable) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def _marking_completed(send: Callable, record: RecordedRequest) -> Callable:
    """`send` that records the answer complete *before* its last byte goes out: once the client holds the
    whole answer, a test may read the record at once (marking it after the send raced with the client)."""

    async def send_and_mark(message: dict) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            record.completed = True
        await send(message)

    return send_and_mark


async def _wait_for_disconnect(receive: Callable) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_json(send: Callable, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


class _HideDroppedConnections(logging.Filter):
    """uvicorn logs a traceback for the exception we raise on purpose to cut a stream."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DropConnection))


logging.getLogger("uvicorn.error").addFilter(_HideDroppedConnections())


# ---- pytest fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def openai_server():
    server = OpenAIServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_openai_server(request):
    # Only tests that use the server (directly or through e.g. `settings`) pay for it.
    if "openai_server" in request.fixturenames:
        request.getfixturevalue("openai_server").reset()
    yield
