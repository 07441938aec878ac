"""The LLM flapping under load, against a real `admin-api serve` process.

40 concurrent sends (half of them streamed) meet an LLM whose answers are a mix of good ones, error
statuses, time-outs, dropped streams and vLLM-style error chunks. Which request meets which behaviour depends
on arrival order, so the test asserts per answer, not per request: every answer is a 2xx, a JSON 502/503/504,
or a stream ending with `end` or an `error` event; the user's message is always stored (complete when
answered, failed otherwise) and an answer only for answered sends; and the metrics count exactly the
outcomes the clients saw.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg

from tests.reliability.conftest import (
    SEND,
    Outcome,
    Recorder,
    answer_of,
    create_users,
    logged_in_clients,
    metric_samples,
)

CLIENTS = 20
SENDS_PER_CLIENT = 2
LLM_TIMEOUT = "1"
BEHAVIOURS = [
    {},  # a good answer
    {"chunk_delay": 0.01},  # a good, slower answer
    {"status": 500},
    {"status": 503},
    {"status": 429, "error_type": "rate_limit_exceeded"},
    {"first_byte_delay": 2.5},  # beyond LLM_TIMEOUT_SECONDS
    {"break_after": 2},  # a stream dropped mid-answer (a JSON answer is whole)
    {"error_chunk_after": 1},  # vLLM's `data: {"error": ...}` after a 200 (a JSON answer is whole)
]
OUTCOME_OF_STATUS = {502: "upstream_error", 503: "unavailable", 504: "timeout"}


def _classify(outcome: Outcome) -> tuple[str, str, int | None]:
    """(user_message_id, metrics outcome, status of the failure or None when answered)."""
    if outcome.status == 200 and outcome.kind == "stream":
        start, last = outcome.body[0].data, outcome.body[-1]
        if last.name == "end":
            return start["user_message_id"], "ok", None
        return start["user_message_id"], OUTCOME_OF_STATUS[last.data["status"]], last.data["status"]
    if outcome.status == 200:
        return outcome.body["user_message_id"], "ok", None
    return outcome.body["user_message_id"], OUTCOME_OF_STATUS[outcome.status], outcome.status


async def test_llm_flapping_under_load_gives_clear_answers_and_stores_every_message(
    serve, database_url, password_hash, openai_server, db: asyncpg.Pool
):
    total = CLIENTS * SENDS_PER_CLIENT
    for i in range(total):
        openai_server.queue(answer=f"answer number {i} in pieces", **BEHAVIOURS[i % len(BEHAVIOURS)])
    usernames = await create_users(database_url, CLIENTS, password_hash)
    recorder = Recorder(allowed_errors=frozenset({502, 503, 504}))

    async with serve(LLM_TIMEOUT_SECONDS=LLM_TIMEOUT) as app, logged_in_clients(app.base_url, usernames) as clients:

        async def client_sends(n: int, http) -> None:
            for step in range(SENDS_PER_CLIENT):
                stream = (n + step) % 2 == 0
                body = {"cnvs_idt_id": "", "message": f"question {n}-{step}", "stream": stream}
                await recorder.request(http, "stream" if stream else "send", SEND, body)

        await asyncio.gather(*(client_sends(n, http) for n, http in enumerate(clients)))
        metrics = (await clients[0].get("/metrics")).text

    problems = recorder.problems()
    assert problems == [], problems[:10]
    sends = [o for o in recorder.outcomes if o.kind in ("send", "stream")]
    assert len(sends) == total
    assert len(openai_server.chat_requests) == total  # every send asked the LLM exactly once

    classified = [_classify(o) for o in sends]
    seen = Counter(outcome for _, outcome, _ in classified)
    # The mix really happened (the test could not pass on good answers alone).
    assert seen["ok"] >= 1 and seen["upstream_error"] >= 1 and seen["timeout"] >= 1, seen
    assert any(o.stream_error for o in sends), "no stream ended with an error event"

    # The user's message is always stored; answers only for answered sends, once.
    for outcome, (user_message_id, kind, failed_status) in zip(sends, classified):
        row = await db.fetchrow(
            'SELECT "CNVS_IDT_ID", "ROLE_CD", "STTS_CD" FROM "CNVS_MSG" WHERE "MSG_IDT_ID" = $1', user_message_id
        )
        assert row is not None, f"user message of a {kind} send not stored"
        assert row["ROLE_CD"] == "user"
        answers = await db.fetch(
            'SELECT "MSG_IDT_ID", "MSG_CN", "STTS_CD" FROM "CNVS_MSG" WHERE "CNVS_IDT_ID" = $1 AND "ROLE_CD" = $2',
            row["CNVS_IDT_ID"],
            "assistant",
        )
        if failed_status is None:
            assert row["STTS_CD"] == "complete"
            text = answer_of(outcome.body) if outcome.kind == "stream" else outcome.body["answer"]
            assert [(a["MSG_CN"], a["STTS_CD"]) for a in answers] == [(text, "complete")]
        else:
            assert row["STTS_CD"] == "failed", f"a {failed_status} left the user message {row['STTS_CD']}"
            assert all(a["STTS_CD"] == "failed" for a in answers) and len(answers) <= 1

    # Metrics count the outcomes the clients saw.
    llm_counts = metric_samples(metrics, "llm_request_duration_seconds_count")
    counted = Counter({dict(labels)["outcome"]: value for labels, value in llm_counts.items() if value})
    assert counted == seen
    http_counts = metric_samples(metrics, "http_requests_total")
    by_status = Counter(
        {dict(labels)["status"]: value for labels, value in http_counts.items() if dict(labels)["route"] == SEND}
    )
    assert by_status == Counter(str(o.status) for o in sends)
