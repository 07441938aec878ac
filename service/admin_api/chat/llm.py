"""The OpenAI-compatible LLM (vLLM in production): client, calls, and what their failures mean for us."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import openai

from admin_api.chat.schemas import TokenUsage
from admin_api.core.text import storable

if TYPE_CHECKING:
    from admin_api.settings import Settings

log = logging.getLogger(__name__)

# vLLM ignores the key, but the SDK refuses to start without one.
PLACEHOLDER_API_KEY = "unused"

# What the LLM (or the way to it) can make the SDK raise: its own errors (refused, timed out, an error
# status, a dropped stream, an error chunk: the SDK wraps transport errors) and undecodable data
# (ValueError: JSON, or a usage pydantic refuses). Anything else is a bug of ours and is not hidden.
UPSTREAM_ERRORS: tuple[type[Exception], ...] = (openai.OpenAIError, ValueError)


def build_llm_client(settings: Settings) -> openai.AsyncOpenAI:
    """One client per app (built in the lifespan): it owns the HTTP connection pool."""
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else PLACEHOLDER_API_KEY
    return openai.AsyncOpenAI(
        base_url=str(settings.llm_endpoint),
        api_key=api_key,
        # The SDK's defaults (600 s, 2 retries) are wrong for an interactive API: fail fast, let the user retry.
        timeout=openai.Timeout(settings.llm_timeout_seconds, connect=settings.llm_connect_timeout_seconds),
        max_retries=0,
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


def translate_error(exc: BaseException) -> LLMError:
    """Map whatever the SDK raised to our three failures; never pass its text on (it may hold internals)."""
    if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: check it first
        return LLMTimeout()
    if isinstance(exc, openai.APIConnectionError):
        return LLMUnavailable()
    return LLMUpstreamError()


@dataclass(frozen=True)
class Completion:
    text: str
    usage: TokenUsage | None


def _request_options(model: str, messages: list[dict[str, str]], temperature: float | None) -> dict[str, Any]:
    options: dict[str, Any] = {"model": model, "messages": messages}
    if temperature is not None:  # otherwise the model's own default applies
        options["temperature"] = temperature
    return options


def _usage(raw: Any) -> TokenUsage | None:
    if raw is None:
        return None
    # getattr: a field the server left out is a validation error (ValueError), like a malformed one.
    return TokenUsage(
        prompt_tokens=getattr(raw, "prompt_tokens", None),
        completion_tokens=getattr(raw, "completion_tokens", None),
        total_tokens=getattr(raw, "total_tokens", None),
    )


async def complete(
    client: openai.AsyncOpenAI, *, model: str, messages: list[dict[str, str]], temperature: float | None
) -> Completion:
    try:
        response = await client.chat.completions.create(**_request_options(model, messages, temperature))
    except UPSTREAM_ERRORS as exc:  # the LLM's failure, never a 500
        raise _logged(translate_error(exc), exc) from exc
    if not response.choices:
        raise _logged(LLMUpstreamError(), None)
    return Completion(text=storable(response.choices[0].message.content or ""), usage=_usage(response.usage))


async def open_stream(
    client: openai.AsyncOpenAI, *, model: str, messages: list[dict[str, str]], temperature: float | None
) -> openai.AsyncStream:
    """Start a streamed completion; returns once the upstream answered with 200 (errors before that raise)."""
    options = _request_options(model, messages, temperature)
    try:
        return await client.chat.completions.create(**options, stream=True, stream_options={"include_usage": True})
    except UPSTREAM_ERRORS as exc:
        raise _logged(translate_error(exc), exc) from exc


async def stream_pieces(stream: openai.AsyncStream) -> AsyncIterator[str | TokenUsage]:
    """Yield the answer's text pieces, and the usage when the server reports it (last chunk)."""
    try:
        async for chunk in stream:
            if chunk.usage is not None:
                yield _usage(chunk.usage)
            for choice in chunk.choices:
                if choice.delta.content:
                    yield storable(choice.delta.content)
    except UPSTREAM_ERRORS as exc:  # a dropped stream, a read timeout, vLLM's `data: {"error": ...}` chunk
        raise _logged(translate_error(exc), exc) from exc


def _logged(error: LLMError, cause: BaseException | None) -> LLMError:
    # The exception's class is enough to diagnose; its text may echo the prompt, so it is not logged.
    log.warning(
        "llm call failed",
        extra={"llm_outcome": error.outcome, "llm_exception": type(cause).__name__ if cause else None},
    )
    return error
