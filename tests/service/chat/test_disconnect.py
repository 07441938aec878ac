"""A client that leaves mid-stream cancels the upstream LLM request (real uvicorn, real sockets)."""

from __future__ import annotations

import asyncio

import httpx

from admin_api.main import create_app
from tests.service.chat.conftest import SEND, parse_sse, serve_over_tcp, stored_messages


async def test_a_client_leaving_mid_stream_cancels_the_llm_request(make_settings, make_user, openai_server, db):
    # 100 pieces, 0.1 s apart: the full answer would take 10 s; we leave after two pieces.
    openai_server.script(answer=" ".join(f"w{i}" for i in range(100)), chunk_delay=0.1)
    app = create_app(make_settings(cookie_secure=False))  # plain http on loopback
    user = await make_user()

    async with serve_over_tcp(app) as base_url, httpx.AsyncClient(base_url=base_url) as http:
        login = await http.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
        assert login.status_code == 200
        received = ""
        async with http.stream("POST", SEND, json={"message": "talk a lot", "stream": True}) as response:
            assert response.status_code == 200
            async for text in response.aiter_text():
                received += text
                if received.count("event: delta") >= 2:
                    break  # leaving the block closes the connection mid-stream

        await openai_server.wait_until(lambda: openai_server.chat_requests[0].disconnected, timeout=3)
        upstream = openai_server.chat_requests[0]
        assert not upstream.completed

        cnvs_idt_id = parse_sse(received.rsplit("\n\n", 1)[0])[0].data["cnvs_idt_id"]

        messages = []
        for _ in range(100):  # the turn is settled right after the disconnect, in the server's task
            messages = await stored_messages(db, cnvs_idt_id)
            if len(messages) == 2:
                break
            await asyncio.sleep(0.05)
        metrics = (await http.get("/metrics")).text

    # What is stored on disconnect: the user's message and the partial answer, both marked failed.
    assert [(m.role, m.status) for m in messages] == [("user", "failed"), ("assistant", "failed")]
    assert messages[1].content.startswith("w0 w1 ")
    assert 'llm_request_duration_seconds_count{outcome="cancelled"} 1.0' in metrics
