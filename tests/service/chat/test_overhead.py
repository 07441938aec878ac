"""What chat/send costs on top of the LLM's own time (printed, not asserted: timing asserts are flaky).

Run with `-s` to see it. Same run, same LLM test server, same LLM client and prompt: the difference is our
HTTP stack, session check, two PostgreSQL transactions and the JSON work.
"""

from __future__ import annotations

import time

import pytest

from tests.service.chat.conftest import SEND

ROUNDS = 100
WARMUP = 10


async def mean_ms(action, rounds: int = ROUNDS) -> float:
    for _ in range(WARMUP):
        await action()
    started = time.perf_counter()
    for _ in range(rounds):
        await action()
    return (time.perf_counter() - started) * 1000 / rounds


async def measure(name: str, send, direct) -> None:
    send_ms, direct_ms = await mean_ms(send), await mean_ms(direct)
    print(
        f"\n{name}: chat/send mean {send_ms:.2f} ms, direct LLM call mean {direct_ms:.2f} ms, "
        f"overhead {send_ms - direct_ms:.2f} ms per send ({ROUNDS} sends)"
    )


@pytest.fixture
def settings(make_settings):
    return make_settings(chat_rate_limit=1_000_000)  # hundreds of sends by one user: a measurement, not abuse


@pytest.mark.bench
async def test_send_overhead_over_a_direct_llm_call(app, user_client, openai_server):
    llm = app.state.resources.llm

    async def send_new() -> None:
        response = await user_client.post(SEND, json={"message": "How are you?"})
        assert response.status_code == 200

    async def direct_new() -> None:
        await llm.chat.completions.create(model="test-model", messages=[{"role": "user", "content": "How are you?"}])

    await measure("new conversation", send_new, direct_new)

    conversation = (await user_client.post(SEND, json={"message": "How are you?"})).json()["cnvs_idt_id"]

    async def send_on() -> None:
        response = await user_client.post(SEND, json={"cnvs_idt_id": conversation, "message": "And now?"})
        assert response.status_code == 200

    await mean_ms(send_on, 20)  # the conversation now has a full context window
    full_prompt = openai_server.chat_requests[-1].messages

    async def direct_on() -> None:
        await llm.chat.completions.create(model="test-model", messages=full_prompt)

    await measure(f"conversation with {len(full_prompt)} messages of context", send_on, direct_on)
