"""chat/send: store the user's message, ask the LLM with the conversation's recent turns, store the answer.

Stored states of a turn (CNVS_MSG."STTS_CD"):
- in flight: the user message is stored 'failed' (not answered) and becomes 'complete' only in the very
  transaction that stores its answer; so an answer that could not be stored (PostgreSQL failing after the
  LLM answered) leaves the turn failed, never context for the next one.
- answered: user message 'complete', assistant message 'complete'.
- the LLM failed before answering (down, slow, error status): the user message is kept, marked 'failed'
  (the client shows "not answered, retry"), and no assistant message is stored.
- a stream that broke or whose client went away: the user message 'failed' and the partial answer, if any,
  stored as an assistant message 'failed'.
- the server began to shut down before the LLM answered (LLMCancelled, 503): as when the LLM failed; an open
  stream then ends like one whose client went away (chat.router.ChatEventStreamResponse).
Only 'complete' messages are sent to the LLM as context, so a failed turn never confuses later answers.

The first message of a new conversation is stored while the LLM is asked (its prompt needs no history): nothing
of the LLM's is used, nor a failure of it recorded, before that message is committed; if storing it fails, the
LLM request is closed and the send fails as if the LLM had never been asked.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import asyncpg
from redis.asyncio import Redis

from admin_api.chat import llm, repository
from admin_api.chat.idempotency import Claim, IdempotencyStore, Replay, fingerprint
from admin_api.chat.limits import ChatLimiter
from admin_api.chat.schemas import ChatSendRequest, ChatSendResponse, TokenUsage
from admin_api.conversations import ConversationNotFound
from admin_api.core.errors import is_unavailable
from admin_api.documents.prompt import context_message
from admin_api.documents.schemas import Source
from admin_api.documents.service import DocumentsError, Retriever

log = logging.getLogger(__name__)

T = TypeVar("T")

CONTEXT_MESSAGES = 20  # previous complete messages sent to the LLM (10 turns): bounds prompt size and cost
TITLE_MAX_CHARS = 60
CLEANUP_TIMEOUT_SECONDS = 5.0

# observe_llm(outcome, seconds): feeds the core's llm_request_duration_seconds{outcome} histogram.
LLMLatencyObserver = Callable[[str, float], None]


@dataclass(frozen=True)
class Turn:
    cnvs_idt_id: str
    user_message_id: str
    prompt: list[dict[str, str]]  # recent complete messages, [the retrieved chunks,] then the new user message
    temperature: float | None
    sources: list[Source] | None = None  # None: the turn did not ask for documents


class TurnFailed(Exception):
    """The LLM failed; the user's message is stored, and the client can retry in the same conversation."""

    def __init__(self, error: llm.LLMError, turn: Turn) -> None:
        super().__init__(error.detail)
        self.error = error
        self.turn = turn


@dataclass(frozen=True)
class ReplayedAnswer:
    """The stored result of an earlier send with the same Idempotency-Key."""

    result: dict[str, Any]


@dataclass(frozen=True)
class ChatEvent:
    name: str  # start | sources | delta | end | error
    data: dict[str, Any]


# Events that can be sent at once (one write): e.g. the deltas of the LLM's chunks that arrived together.
EventBatch = list[ChatEvent]


def conversation_title(message: str) -> str:
    title = " ".join(message.split())
    return title if len(title) <= TITLE_MAX_CHARS else title[: TITLE_MAX_CHARS - 1].rstrip() + "…"


def replay_events(result: dict[str, Any]) -> list[ChatEvent]:
    """A stored result told again as the events of a stream."""
    events = [ChatEvent("start", {"cnvs_idt_id": result["cnvs_idt_id"], "user_message_id": result["user_message_id"]})]
    if result.get("sources"):
        events.append(ChatEvent("sources", {"sources": result["sources"]}))
    return [*events, ChatEvent("delta", {"content": result["answer"]}), ChatEvent("end", _end_event_data(result))]


def _end_event_data(result: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in result.items() if key not in ("answer", "sources")}


async def _shielded(action: Callable[[], Awaitable[None]]) -> None:
    """Run cleanup even while the request is being cancelled (client gone), but never for long."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT_SECONDS):
        try:
            await action()
        except Exception as exc:  # cleanup is best effort: the turn was already stored as sent
            if is_unavailable(exc):  # PostgreSQL or Redis gone: expected now and then, a line is enough
                log.warning("chat cleanup failed", extra={"error_type": type(exc).__name__})
            else:  # anything else is a bug: keep the trace
                log.exception("chat cleanup failed", extra={"error_type": type(exc).__name__})


async def _unless_shutting_down(call: Awaitable[T], shutting_down: asyncio.Event) -> T:
    """Await `call`, unless the server begins to shut down first: then cancel it (which closes the LLM
    request) and raise LLMCancelled, rather than keep the client waiting through the graceful shutdown."""
    call_task = asyncio.ensure_future(call)
    shutdown = asyncio.ensure_future(shutting_down.wait())
    try:
        await asyncio.wait((call_task, shutdown), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request is cancelled itself
        shutdown.cancel()
        if not call_task.done():
            call_task.cancel()
            await asyncio.wait((call_task,))
    if call_task.cancelled():
        raise llm.LLMCancelled()
    return call_task.result()


def _turn(
    request: ChatSendRequest,
    cnvs_idt_id: str,
    user_message_id: str,
    sources: list[Source] | None,
    history: list[dict[str, str]],
) -> Turn:
    prompt = history
    if sources is not None:
        prompt.append(context_message(sources))
    prompt.append({"role": "user", "content": request.message})
    return Turn(cnvs_idt_id, user_message_id, prompt, request.temperature, sources)


async def _asked_while_stored(asking: Awaitable[T], storing: Awaitable[Any]) -> T:
    """`asking`'s outcome once `storing` has committed. If storing fails (or this is cancelled), the LLM call is
    cancelled, or the stream it opened closed, and storing's error raised: the LLM's own outcome is dropped."""
    asked = asyncio.ensure_future(asking)
    stored = asyncio.ensure_future(storing)  # a task too: the LLM's request, the longer wait, is sent first
    try:
        await stored
    except BaseException:
        asked.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.wait((asked,))
        if not asked.cancelled() and asked.exception() is None and isinstance(asked.result(), llm.LLMStream):
            await _shielded(asked.result().close)
        raise
    return await asked


class ChatService:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        redis: Redis,
        llm_client: llm.LLMClient,
        model: str,
        user_id: int,
        observe_llm: LLMLatencyObserver,
        shutting_down: asyncio.Event,
        retriever: Retriever | None = None,
        limiter: ChatLimiter | None = None,
    ) -> None:
        self._pool = pool
        self._retriever = retriever
        self._llm = llm_client
        self._model = model
        self._user_id = user_id
        self._observe_llm = observe_llm
        self._shutting_down = shutting_down
        self._idempotency = IdempotencyStore(redis, user_id=user_id)
        self._limiter = limiter

    async def send(
        self, request: ChatSendRequest, idempotency_key: str | None
    ) -> ChatSendResponse | AnswerStream | ReplayedAnswer:
        if idempotency_key is None:
            return await self._limited(request, claim=None)
        claimed = await self._idempotency.claim(idempotency_key, fingerprint(request.fingerprint_fields()))
        if isinstance(claimed, Replay):  # not a send: not counted by the limits
            return ReplayedAnswer(claimed.result)
        try:
            return await self._limited(request, claimed)
        except BaseException:
            await _shielded(lambda: self._idempotency.release(claimed))
            raise

    async def _limited(self, request: ChatSendRequest, claim: Claim | None) -> ChatSendResponse | AnswerStream:
        """`_run` within the user's limits (chat.limits; ChatLimited, 429, before anything is stored or asked):
        the in-progress slot is held until the LLM has answered (released while the answer is stored) or failed,
        for a stream until it closes."""
        if self._limiter is None:
            return await self._run(request, claim, release_slot=None)
        limiter = self._limiter
        slot = await limiter.acquire()

        async def release_slot() -> None:
            await limiter.release(slot)

        try:
            outcome = await self._run(request, claim, release_slot)
        except BaseException:
            await _shielded(release_slot)  # again, if it was already: a no-op
            raise
        if isinstance(outcome, AnswerStream):
            outcome.on_closed = release_slot
        return outcome

    async def _run(
        self, request: ChatSendRequest, claim: Claim | None, release_slot: Callable[[], Awaitable[None]] | None
    ) -> ChatSendResponse | AnswerStream:
        sources = await self._retrieve(request)  # before anything is stored: another's document is a 404
        if request.cnvs_idt_id:  # its prompt holds the history the statement reads: stored before the LLM is asked
            turn, storing = await self._start_turn(request, sources), None
        else:
            turn, storing = self._start_new_conversation(request, sources)
        if request.stream:
            return await self._open_answer_stream(turn, claim, storing)
        result = await self._answer(turn, release_slot, storing)
        if claim is not None:
            await self._idempotency.finish(claim, result.model_dump(mode="json"))
        return result

    async def _retrieve(self, request: ChatSendRequest) -> list[Source] | None:
        """On every turn that asks for documents: the chunks nearest to this message."""
        if not request.wants_documents:
            return None
        if self._retriever is None:
            raise DocumentsError(503, "Documents are not configured on this server.")
        return await self._retriever.retrieve(self._user_id, request.message, request.document_ids)

    async def _start_turn(self, request: ChatSendRequest, sources: list[Source] | None = None) -> Turn:
        """In the user's conversation: commit the user's message and read the recent history (one statement:
        chat.repository), before the LLM is asked."""
        user_message_id = str(uuid.uuid4())
        started = await repository.continue_conversation(
            self._pool,
            cnvs_idt_id=request.cnvs_idt_id,
            user_id=self._user_id,
            msg_idt_id=user_message_id,
            content=request.message,
            history_limit=CONTEXT_MESSAGES,
        )
        if not started.found:
            raise ConversationNotFound()
        history = [{"role": role, "content": content} for role, content in started.history]
        return _turn(request, request.cnvs_idt_id, user_message_id, sources, history)

    def _start_new_conversation(
        self, request: ChatSendRequest, sources: list[Source] | None
    ) -> tuple[Turn, Awaitable[Any]]:
        """A new conversation's turn, and the statement that stores it (with its user message): to be awaited
        while the LLM is asked (`_ask_llm`)."""
        turn = _turn(request, str(uuid.uuid4()), str(uuid.uuid4()), sources, history=[])
        storing = repository.start_new_conversation(
            self._pool,
            cnvs_idt_id=turn.cnvs_idt_id,
            user_id=self._user_id,
            title=conversation_title(request.message),
            msg_idt_id=turn.user_message_id,
            content=request.message,
        )
        return turn, storing

    async def _answer(
        self, turn: Turn, release_slot: Callable[[], Awaitable[None]] | None, storing: Awaitable[Any] | None
    ) -> ChatSendResponse:
        started = time.perf_counter()
        completion = await self._ask_llm(
            turn,
            started,
            llm.complete(self._llm, model=self._model, messages=turn.prompt, temperature=turn.temperature),
            storing,
        )
        self.observe_llm_since("ok", started)
        recording = self.record_answer(turn, completion.text, completion.usage)
        if release_slot is None:
            return await recording
        # The slot (Redis) is freed while the answer is stored (PostgreSQL): one round trip less to wait for.
        answer, _ = await asyncio.gather(recording, _shielded(release_slot))
        return answer

    async def _open_answer_stream(
        self, turn: Turn, claim: Claim | None, storing: Awaitable[Any] | None
    ) -> AnswerStream:
        started = time.perf_counter()
        upstream = await self._ask_llm(
            turn,
            started,
            llm.open_stream(self._llm, model=self._model, messages=turn.prompt, temperature=turn.temperature),
            storing,
        )
        return AnswerStream(self, turn, upstream, claim, started)

    async def _ask_llm(self, turn: Turn, started: float, call: Awaitable[T], storing: Awaitable[Any] | None) -> T:
        """Await an LLM call (while `storing` the turn's user message, if it is not yet); if the call fails (or
        the server shuts down first), store the turn as failed."""
        asking = _unless_shutting_down(call, self._shutting_down)
        try:
            return await (asking if storing is None else _asked_while_stored(asking, storing))
        except llm.LLMError as error:
            self.observe_llm_since(error.outcome, started)
            await _shielded(lambda: self.record_failed_turn(turn, partial_answer=""))
            raise TurnFailed(error, turn) from error

    async def record_answer(self, turn: Turn, answer: str, usage: TokenUsage | None) -> ChatSendResponse:
        stored = await repository.record_answer(
            self._pool,
            msg_idt_id=str(uuid.uuid4()),
            cnvs_idt_id=turn.cnvs_idt_id,
            user_msg_idt_id=turn.user_message_id,
            content=answer,
            sources=[source.model_dump() for source in turn.sources] if turn.sources is not None else None,
        )
        return ChatSendResponse(
            cnvs_idt_id=turn.cnvs_idt_id,
            user_message_id=turn.user_message_id,
            message_id=stored.msg_idt_id,
            answer=answer,
            created_at=stored.created_at,
            usage=usage,
            sources=turn.sources or [],
        )

    async def record_failed_turn(self, turn: Turn, partial_answer: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await repository.mark_message_failed(conn, msg_idt_id=turn.user_message_id)
            if partial_answer:
                await repository.add_message(
                    conn,
                    msg_idt_id=str(uuid.uuid4()),
                    cnvs_idt_id=turn.cnvs_idt_id,
                    role=repository.ROLE_ASSISTANT,
                    content=partial_answer,
                    status=repository.STATUS_FAILED,
                )
            await repository.touch_conversation(conn, cnvs_idt_id=turn.cnvs_idt_id)

    async def finish_idempotent(self, claim: Claim | None, result: dict[str, Any]) -> None:
        if claim is not None:
            await self._idempotency.finish(claim, result)

    async def release_idempotent(self, claim: Claim | None) -> None:
        if claim is not None:
            await self._idempotency.release(claim)

    def observe_llm_since(self, outcome: str, started: float) -> None:
        self._observe_llm(outcome, time.perf_counter() - started)


class AnswerStream:
    """A streamed answer: `events()` for the response body, `abort()` always called when the response ends.

    The answer is stored when the upstream stream ends. If our client goes away first, `abort()` closes the
    upstream request (vLLM then stops generating) and stores the partial answer as 'failed'.
    """

    def __init__(
        self, service: ChatService, turn: Turn, upstream: llm.LLMStream, claim: Claim | None, started: float
    ) -> None:
        self.turn = turn
        self._service = service
        self._upstream = upstream
        self._claim = claim
        self._started = started
        self._pieces: list[str] = []
        self._settled = False  # the outcome (answer or failure) was stored: abort() has nothing to do
        self._events: AsyncIterator[EventBatch] | None = None
        self.on_closed: Callable[[], Awaitable[None]] | None = None  # run last by abort() (frees the send's slot)

    def events(self) -> AsyncIterator[EventBatch]:
        self._events = self._generate()
        return self._events

    async def _generate(self) -> AsyncIterator[EventBatch]:
        turn = self.turn
        opening = [ChatEvent("start", {"cnvs_idt_id": turn.cnvs_idt_id, "user_message_id": turn.user_message_id})]
        if turn.sources is not None:  # before the first delta, so the client can show them as the answer arrives
            opening.append(ChatEvent("sources", {"sources": [source.model_dump() for source in turn.sources]}))
        yield opening
        usage: TokenUsage | None = None
        failure: llm.LLMError | None = None
        try:
            async for arrived in llm.stream_pieces(self._upstream):
                deltas: EventBatch = []
                for piece in arrived:
                    if isinstance(piece, TokenUsage):
                        usage = piece
                    else:
                        self._pieces.append(piece)
                        deltas.append(ChatEvent("delta", {"content": piece}))
                if deltas:  # as soon as they arrived: never held back to wait for more
                    yield deltas
        except llm.LLMError as error:
            failure = error
        self._settled = True
        if failure is not None:
            await _shielded(lambda: self._settle_failure(failure.outcome))
            yield [ChatEvent("error", self._error_data(failure))]
            return
        result: dict[str, Any] = {}

        async def store_answer() -> None:
            # Shielded: once the upstream has finished, a client leaving must not lose the answer.
            await self._upstream.close()
            self._service.observe_llm_since("ok", self._started)
            stored = await self._service.record_answer(self.turn, "".join(self._pieces), usage)
            result.update(stored.model_dump(mode="json"))
            await self._service.finish_idempotent(self._claim, result)

        await _shielded(store_answer)
        if not result:  # storing failed (logged): free the key for a retry and tell the client
            await _shielded(lambda: self._service.release_idempotent(self._claim))
            stored_nothing = "The answer could not be stored. Please try again."
            yield [ChatEvent("error", self._error_data(llm.LLMUnavailable(), stored_nothing))]
            return
        yield [ChatEvent("end", _end_event_data(result))]

    def _error_data(self, error: llm.LLMError, detail: str | None = None) -> dict[str, Any]:
        return {
            "detail": detail or error.detail,
            "status": error.status_code,
            "cnvs_idt_id": self.turn.cnvs_idt_id,
            "user_message_id": self.turn.user_message_id,
        }

    async def _settle_failure(self, outcome: str) -> None:
        await self._upstream.close()
        self._service.observe_llm_since(outcome, self._started)
        await self._service.release_idempotent(self._claim)
        await self._service.record_failed_turn(self.turn, partial_answer="".join(self._pieces))

    async def abort(self) -> None:
        """Called when the response ends for any reason; cleans up only if the stream did not settle itself."""
        if self._events is not None:
            await _shielded(self._events.aclose)
        if not self._settled:
            self._settled = True
            log.info("chat stream ended early", extra={"cnvs_idt_id": self.turn.cnvs_idt_id})
            await _shielded(lambda: self._settle_failure("cancelled"))
        if self.on_closed is not None:
            await _shielded(self.on_closed)
