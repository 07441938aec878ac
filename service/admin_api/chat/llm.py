"""The OpenAI-compatible LLM (vLLM in production): its wire format spoken over aiohttp, and what its failures
mean for us.

Not the openai SDK: measured from outside (`make bench`) it took 2.6–11 ms per call and 0.3–1 ms per streamed
chunk (its httpx2 over anyio, and a model built in Python per response and per chunk), against ~0.6 ms per
call over aiohttp; and we read two fields of a completion. Here a response is parsed and checked in one pass of pydantic-core
(`model_validate_json`) against models of just those fields.
"""

from __future__ import annotations

import logging
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel

from admin_api.chat.schemas import TokenUsage
from admin_api.core.text import storable

if TYPE_CHECKING:
    from admin_api.settings import Settings

log = logging.getLogger(__name__)

# A streamed chunk's `data:` line longer than this is an upstream error (a delta is a few tokens).
MAX_EVENT_BYTES = 4 * 1024 * 1024
MAX_CONNECTIONS = 1000  # as the SDK's pool: concurrent sends are bounded by the users' limits, not here

# What the LLM (or the way to it) can make a call raise: transport errors (refused, reset, timed out, a
# dropped stream), HTTP the parser refuses, and undecodable or ill-shaped data (ValueError: JSON, or a
# completion pydantic refuses). Anything else is a bug of ours and is not hidden.
UPSTREAM_ERRORS: tuple[type[Exception], ...] = (aiohttp.ClientError, HttpProcessingError, TimeoutError, ValueError)


class LLMClient:
    """One per app (built in the lifespan): it owns the connection pool to the LLM."""

    def __init__(self, *, endpoint: str, api_key: str | None, timeout_seconds: float, connect_timeout_seconds: float):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        # Fail fast, let the user retry: connecting may take connect_timeout_seconds, and the LLM may stay
        # silent timeout_seconds at most (before its first byte, or between two chunks of a stream).
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_seconds, sock_connect=connect_timeout_seconds, sock_read=timeout_seconds
        )
        self.proxy = _proxy_for(self.url)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on first use: aiohttp binds it to the running event loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
                timeout=self.timeout,
            )
        return self._session

    async def post(self, body: dict[str, Any]) -> aiohttp.ClientResponse:
        # No redirects: an LLM endpoint that redirects is misconfigured (and a POST must not become a GET).
        return await self.session().post(
            self.url, data=orjson.dumps(body), headers=self.headers, proxy=self.proxy, allow_redirects=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _proxy_for(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY and NO_PROXY name for `url`, as the SDK's httpx honoured them; read once here, as
    aiohttp's trust_env would look them (and ~/.netrc) up again in a worker thread on every request."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy is None or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def build_llm_client(settings: Settings) -> LLMClient:
    return LLMClient(
        endpoint=str(settings.llm_endpoint),
        api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
        timeout_seconds=settings.llm_timeout_seconds,
        connect_timeout_seconds=settings.llm_connect_timeout_seconds,
    )


class LLMError(Exception):
    """The LLM could not answer; carries the HTTP status and the words we show the client."""

    status_code = 502
    outcome = "upstream_error"  # metrics label
    detail = "The language model answered with an error. Please try again."


class LLMUnavailable(LLMError):
    status_code = 503
    outcome = "unavailable"
    detail = "The language model is unavailable. Please try again later."


class LLMTimeout(LLMError):
    status_code = 504
    outcome = "timeout"
    detail = "The language model did not answer in time. Please try again."


class LLMUpstreamError(LLMError):
    pass


class LLMCancelled(LLMError):
    """We stopped waiting for the LLM because the server is shutting down (the client may retry elsewhere)."""

    status_code = 503
    outcome = "cancelled"
    detail = "The server is restarting. Please retry."


class _ErrorAnswer(Exception):
    """The LLM answered, but with an error: a status other than 2xx, or an error event in a stream."""


def translate_error(exc: BaseException) -> LLMError:
    """Map what a call raised to our three failures; never pass its text on (it may hold internals)."""
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are also connection errors: check it first
        return LLMTimeout()
    if isinstance(exc, aiohttp.ClientError):  # refused, reset, a stream cut short
        return LLMUnavailable()
    return LLMUpstreamError()  # an error answer, or data we cannot read


# ---- the wire: only the fields we use (others are ignored), checked as they are parsed ----


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _CompletionBody(BaseModel):
    choices: list[_Choice]
    usage: TokenUsage | None = None


class _Delta(BaseModel):
    content: str | None = None


class _ChunkChoice(BaseModel):
    delta: _Delta | None = None


class _Chunk(BaseModel):
    choices: list[_ChunkChoice] = []
    usage: TokenUsage | None = None
    error: Any = None  # vLLM reports a failure after its 200 as `data: {"error": {...}}`


@dataclass(frozen=True)
class Completion:
    text: str
    usage: TokenUsage | None


def _request_body(model: str, messages: list[dict[str, str]], temperature: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages}
    if temperature is not None:  # otherwise the model's own default applies
        body["temperature"] = temperature
    return body


async def complete(
    client: LLMClient, *, model: str, messages: list[dict[str, str]], temperature: float | None
) -> Completion:
    try:
        async with await client.post(_request_body(model, messages, temperature)) as response:
            if not 200 <= response.status < 300:
                raise _ErrorAnswer(response.status)
            body = _CompletionBody.model_validate_json(await response.read())
        if not body.choices:
            raise _ErrorAnswer("no choices")
    except (*UPSTREAM_ERRORS, _ErrorAnswer) as exc:  # the LLM's failure, never a 500
        raise _logged(translate_error(exc), exc) from exc
    return Completion(text=storable(body.choices[0].message.content or ""), usage=body.usage)


class LLMStream:
    """A streamed completion whose upstream answered 200; `close()` whatever happens (it frees the connection)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._finished = False  # read to its end: the connection can serve the next call

    async def close(self) -> None:
        if self._finished:
            self._response.release()
        else:  # closing the connection is how the LLM learns to stop generating (vLLM aborts the request)
            self._response.close()

    async def events(self) -> AsyncIterator[list[bytes]]:
        """The `data` of the server-sent events up to `[DONE]`, as they arrive: each list holds those that came
        in together (so they can go on together). The body is read to its end; an `error` event raises."""
        pending = b""
        data: list[bytes] = []
        name = b""
        done = False
        async for block in self._blocks():
            *lines, pending = (pending + block).split(b"\n")
            if len(pending) > MAX_EVENT_BYTES:
                raise _ErrorAnswer("event too long")
            arrived: list[bytes] = []
            for line in lines:
                if done:
                    break
                line = line.rstrip(b"\r")
                if line:
                    field, _, value = line.partition(b":")
                    value = value[1:] if value.startswith(b" ") else value
                    if field == b"data":
                        data.append(value)
                    elif field == b"event":
                        name = value
                    continue
                if not data:  # a blank line ends an event (if it had data)
                    continue
                payload = b"\n".join(data)
                if name == b"error":
                    if arrived:  # what came before it is part of the answer
                        yield arrived
                    raise _ErrorAnswer("error event")
                data, name = [], b""
                if payload == b"[DONE]":
                    done = True
                else:
                    arrived.append(payload)
            if arrived:
                yield arrived
        self._finished = True

    async def _blocks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, until its end; a broken connection raises after the bytes that came before it."""
        content = self._response.content
        while True:
            try:
                block = await content.readany()
            except aiohttp.ClientPayloadError:
                if left := _unread(content):
                    yield left
                raise
            if not block:
                return
            yield block


def _unread(content: aiohttp.StreamReader) -> bytes:
    """What aiohttp received before the connection broke but will not hand out: its reads raise the error first
    (aio-libs/aiohttp#3026), and a stream cut short must still keep what the LLM said. Private state, read with
    care: should aiohttp change it, only the last pieces of a broken stream are lost (test_llm_failures.py)."""
    buffer = getattr(content, "_buffer", None)
    offset = getattr(content, "_buffer_offset", 0)
    if not buffer or not isinstance(offset, int):
        return b""
    return b"".join(buffer)[offset:]


async def open_stream(
    client: LLMClient, *, model: str, messages: list[dict[str, str]], temperature: float | None
) -> LLMStream:
    """Start a streamed completion; returns once the upstream answered with 200 (errors before that raise)."""
    body = {**_request_body(model, messages, temperature), "stream": True, "stream_options": {"include_usage": True}}
    try:
        response = await client.post(body)
        if not 200 <= response.status < 300:
            response.close()
            raise _ErrorAnswer(response.status)
    except (*UPSTREAM_ERRORS, _ErrorAnswer) as exc:
        raise _logged(translate_error(exc), exc) from exc
    return LLMStream(response)


async def stream_pieces(stream: LLMStream) -> AsyncIterator[list[str | TokenUsage]]:
    """The answer's text pieces, and the usage when the server reports it (last chunk), in lists of those that
    arrived together; the first text alone, as soon as it is read, not after all that came with it."""
    said = False
    try:
        async for payloads in stream.events():
            while payloads and not said:
                pieces, failure = _pieces_of(payloads[:1])
                payloads = payloads[1:]
                if pieces:
                    said = any(isinstance(piece, str) for piece in pieces)
                    yield pieces
                if failure is not None:
                    raise failure
            if not payloads:
                continue
            pieces, failure = _pieces_of(payloads)
            if pieces:  # those before a bad chunk are part of the answer
                yield pieces
            if failure is not None:
                raise failure
    except (*UPSTREAM_ERRORS, _ErrorAnswer) as exc:  # a dropped stream, a read timeout, vLLM's error chunk
        raise _logged(translate_error(exc), exc) from exc


def _pieces_of(payloads: list[bytes]) -> tuple[list[str | TokenUsage], Exception | None]:
    """The pieces of these chunks up to the first that is an error or cannot be read, and that one's error."""
    pieces: list[str | TokenUsage] = []
    for payload in payloads:
        try:
            chunk = _Chunk.model_validate_json(payload)
        except ValueError as exc:
            return pieces, exc
        if chunk.error:
            return pieces, _ErrorAnswer("error chunk")
        if chunk.usage is not None:
            pieces.append(chunk.usage)
        pieces += [storable(c.delta.content) for c in chunk.choices if c.delta is not None and c.delta.content]
    return pieces, None


def _logged(error: LLMError, cause: BaseException | None) -> LLMError:
    # The exception's class (and an error status) is enough to diagnose; its text may echo the prompt or the
    # LLM's internals, so it is not logged.
    status = cause.args[0] if isinstance(cause, _ErrorAnswer) and isinstance(cause.args[0], int) else None
    log.warning(
        "llm call failed",
        extra={
            "llm_outcome": error.outcome,
            "llm_exception": type(cause).__name__ if cause else None,
            "llm_status": status,
        },
    )
    return error
