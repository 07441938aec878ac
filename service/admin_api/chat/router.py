"""POST /api/v1/chat/send: JSON or a text/event-stream answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from admin_api.auth.dependencies import AuthenticatedUser
from admin_api.chat.idempotency import IdempotencyKeyInUse, IdempotencyKeyReused
from admin_api.chat.limits import ChatLimited, ChatLimiter
from admin_api.chat.llm import LLMCancelled
from admin_api.chat.schemas import ChatErrorResponse, ChatSendRequest, ChatSendResponse
from admin_api.chat.service import (
    AnswerStream,
    ChatEvent,
    ChatService,
    EventBatch,
    ReplayedAnswer,
    TurnFailed,
    replay_events,
)
from admin_api.core.deps import ResourcesDep
from admin_api.core.errors import JSON_WRITE_ERRORS, SESSION_ERRORS, ErrorDetail
from admin_api.core.middleware import TrackedSend

router = APIRouter(prefix="/api/v1/chat", tags=["chat"], responses={**JSON_WRITE_ERRORS, **SESSION_ERRORS})

# Printable ASCII without spaces, as the IETF Idempotency-Key draft and Stripe accept (UUIDs, ULIDs, ...).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
REPLAYED_HEADER = "Idempotent-Replayed"
# no-cache for the EventSource spec's sake, no-store as on every API response; nginx must not buffer.
SSE_HEADERS = {"Cache-Control": "no-cache, no-store", "X-Accel-Buffering": "no"}
SHUTDOWN_DETAIL = LLMCancelled.detail

_LLM_FAILURE_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ChatErrorResponse, "description": description}
    for code, description in (
        (502, "The LLM answered with an error."),
        (503, "The LLM is unavailable, or the server is shutting down."),
        (504, "The LLM did not answer in time."),
    )
}


async def get_chat_service(user: AuthenticatedUser, resources: ResourcesDep) -> ChatService:
    latency = resources.metrics.llm_latency
    return ChatService(
        pool=resources.pool,
        redis=resources.redis,
        llm_client=resources.llm,
        model=resources.settings.llm_model,
        user_id=user.id,
        observe_llm=lambda outcome, seconds: latency.labels(outcome=outcome).observe(seconds),
        shutting_down=resources.shutting_down,
        retriever=resources.documents.retriever() if resources.documents is not None else None,
        limiter=ChatLimiter(
            resources.redis,
            user_id=user.id,
            rate=resources.settings.chat_rate_limit,
            window_seconds=resources.settings.chat_rate_window_seconds,
            concurrency=resources.settings.chat_max_concurrent,
        ),
    )


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]


@router.post(
    "/send",
    response_model=ChatSendResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "The answer (JSON, or events when stream)."},
        404: {"description": "Unknown conversation, or a document that is not the caller's."},
        409: {"description": "A request with this Idempotency-Key is still running."},
        429: {"model": ErrorDetail, "description": "Too many sends (CHAT_RATE_LIMIT, CHAT_MAX_CONCURRENT); see Retry-After."},
        **_LLM_FAILURE_RESPONSES,
    },
)
async def send_message(
    body: ChatSendRequest,
    chat: ChatServiceDep,
    resources: ResourcesDep,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)] = None,
):
    _check_message_length(body, resources.settings.max_message_chars)
    try:
        outcome = await chat.send(body, idempotency_key)  # an unknown conversation: ConversationNotFound, 404
    except IdempotencyKeyInUse:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "A request with this Idempotency-Key is still in progress; retry later."
        ) from None
    except IdempotencyKeyReused:
        # 422 as the IETF Idempotency-Key draft says, in the shape of every other 422 of this API.
        raise RequestValidationError(
            [
                {
                    "loc": ("header", "Idempotency-Key"),
                    "msg": "This Idempotency-Key was already used with a different request body.",
                    "type": "idempotency_key_reused",
                }
            ]
        ) from None
    except ChatLimited as limited:
        resources.metrics.chat_limited.labels(reason=limited.reason).inc()
        detail = "Too many messages at once; wait for an answer." if limited.reason == "concurrency" else (
            "Too many messages; try again later.")
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS, detail, headers={"Retry-After": str(limited.retry_after)}
        ) from None
    except TurnFailed as failure:
        return _llm_failure_response(failure)
    return _answer_response(outcome, body.stream, resources.shutting_down)


def _check_message_length(body: ChatSendRequest, max_chars: int) -> None:
    # A runtime setting (MAX_MESSAGE_CHARS), so not in the static schema; same 422 shape as the schema's.
    if len(body.message) > max_chars:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "message"),
                    "msg": f"String should have at most {max_chars} characters",
                    "type": "string_too_long",
                }
            ]
        )


def _llm_failure_response(failure: TurnFailed) -> JSONResponse:
    body = ChatErrorResponse(
        detail=failure.error.detail,
        cnvs_idt_id=failure.turn.cnvs_idt_id,
        user_message_id=failure.turn.user_message_id,
    )
    headers = {"Retry-After": "5"} if failure.error.status_code == 503 else None
    return JSONResponse(body.model_dump(), status_code=failure.error.status_code, headers=headers)


def _answer_response(
    outcome: ChatSendResponse | AnswerStream | ReplayedAnswer, stream: bool, shutting_down: asyncio.Event
):
    if isinstance(outcome, AnswerStream):
        return ChatEventStreamResponse(outcome.events(), on_close=outcome.abort, shutting_down=shutting_down)
    if isinstance(outcome, ReplayedAnswer):
        replayed = {REPLAYED_HEADER: "true"}
        if stream:
            return ChatEventStreamResponse(_at_once(replay_events(outcome.result)), headers=replayed)
        return JSONResponse(outcome.result, headers=replayed)
    # Serialized here in one pass of pydantic-core, the same JSON FastAPI's response_model would make of it
    # after validating the model once more.
    return Response(outcome.model_dump_json(), media_type="application/json")


async def _at_once(events: EventBatch) -> AsyncIterator[EventBatch]:
    yield events


def encode_event(event: ChatEvent) -> bytes:
    # orjson: compact, and newlines in the text escaped (an event's data stays on one line)
    return b"event: " + event.name.encode() + b"\ndata: " + orjson.dumps(event.data) + b"\n\n"


async def _encoded(batches: AsyncIterator[EventBatch]) -> AsyncIterator[bytes]:
    async for batch in batches:
        yield b"".join(encode_event(event) for event in batch)


class ChatEventStreamResponse(StreamingResponse):
    """Server-sent events that stop as soon as the client disconnects or the server shuts down.

    Starlette's StreamingResponse only watches for a disconnect under some ASGI spec versions; here it is
    always watched, so the upstream LLM request is closed at once, not when the next chunk arrives.
    `on_close` runs however the response ends (it settles the turn and closes the upstream request).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[EventBatch],
        *,
        on_close: Callable[[], Awaitable[None]] | None = None,
        shutting_down: asyncio.Event | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(_encoded(events), headers={**SSE_HEADERS, **(headers or {})})
        self._on_close = on_close
        self._shutting_down = shutting_down

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stopped_by: list[str] = []
        tracked = TrackedSend(send)
        try:
            async with anyio.create_task_group() as group:

                async def run_until(name: str, waiter: Callable[[], Awaitable[Any]]) -> None:
                    await waiter()
                    stopped_by.append(name)
                    group.cancel_scope.cancel()

                group.start_soon(run_until, "disconnect", lambda: self.listen_for_disconnect(receive))
                if self._shutting_down is not None:
                    group.start_soon(run_until, "shutdown", self._shutting_down.wait)
                # In this task, as Starlette does: a task of its own would wait a loop iteration to send a byte.
                await run_until("complete", lambda: self.stream_response(tracked))
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # finalize the generators now, not at garbage collection
            if self._on_close is not None:
                await self._on_close()
        if stopped_by and stopped_by[0] == "shutdown":
            await self._end_for_shutdown(send, tracked.response_started)

    async def _end_for_shutdown(self, send: Send, response_started: bool) -> None:
        if not response_started:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        event = encode_event(ChatEvent("error", {"detail": SHUTDOWN_DETAIL, "status": 503}))
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
