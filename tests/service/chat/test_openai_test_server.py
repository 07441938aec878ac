"""The OpenAI-wire test server itself speaks the format the SDK and vLLM use (so the chat tests mean something)."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai


async def test_models_and_json_completion_through_the_sdk(openai_server):
    client = openai.AsyncOpenAI(base_url=openai_server.url, api_key="unused", max_retries=0)
    try:
        models = await client.models.list()
        completion = await client.chat.completions.create(
            model="test-model", messages=[{"role": "user", "content": "two words"}], temperature=1.5
        )
    finally:
        await client.close()

    assert [model.id for model in models.data] == ["test-model"]
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello from the test LLM."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == 2 + 5
    assert openai_server.chat_requests[0].temperature == 1.5


async def test_sse_framing_is_openai_s(openai_server):
    openai_server.script(answer="a b")
    body = {"model": "m", "messages": [], "stream": True, "stream_options": {"include_usage": True}}

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{openai_server.url}/chat/completions", json=body)

    assert response.headers["content-type"] == "text/event-stream"
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    assert '"object": "chat.completion.chunk"' in lines[0] and '"role": "assistant"' in lines[0]
    assert '"content": "a "' in lines[1] and '"content": "b"' in lines[2]
    assert '"finish_reason": "stop"' in lines[3] and '"usage"' in lines[4]
    assert openai_server.chat_requests[0].completed and not openai_server.chat_requests[0].disconnected


async def test_errors_are_openai_shaped(openai_server):
    openai_server.script(status=429, error_message="slow down", error_type="rate_limit_error")

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{openai_server.url}/chat/completions", json={"model": "m", "messages": []})

    assert response.status_code == 429
    assert response.json() == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": 429}
    }


async def test_queued_scripts_apply_once_then_the_default(openai_server):
    openai_server.queue(status=500)

    async with httpx.AsyncClient() as http:
        statuses = [
            (await http.post(f"{openai_server.url}/chat/completions", json={"messages": []})).status_code
            for _ in range(2)
        ]

    assert statuses == [500, 200]


async def test_a_stream_can_be_held_midway_until_released(openai_server):
    openai_server.script(answer="a b c", hold_after=1)
    body = {"model": "m", "messages": [], "stream": True}

    async with httpx.AsyncClient() as http:
        async with http.stream("POST", f"{openai_server.url}/chat/completions", json=body) as response:
            chunks = response.aiter_text()
            received = ""
            while '"content": "a "' not in received:
                received += await anext(chunks)
            await asyncio.sleep(0.2)
            assert '"content": "b "' not in received and not openai_server.chat_requests[0].completed

            openai_server.release()
            async for text in chunks:
                received += text

    assert '"content": "b "' in received and received.rstrip().endswith("data: [DONE]")
    await openai_server.wait_until(lambda: openai_server.chat_requests[0].completed)


async def test_a_request_is_recorded_complete_before_its_last_byte_leaves():
    """FINDING (fixed): `completed` was set after the last byte was sent, so a test reading it as soon as its
    client had the answer raced the server thread (and failed under CPU load). Driven over ASGI directly, so
    the moment of the last byte is exact."""
    from tests.support.openai_server import OpenAIServer

    server = OpenAIServer()
    seen_at_last_byte = []

    bodies = []

    async def receive():
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()  # the client stays: no http.disconnect

    async def send(message):
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            seen_at_last_byte.append(server.requests[-1].completed)

    for stream in (False, True):
        bodies.append({"type": "http.request", "body": json.dumps({"stream": stream}).encode(), "more_body": False})
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
        await server(scope, receive, send)
    assert seen_at_last_byte == [True, True]
    assert not any(r.disconnected for r in server.requests)
