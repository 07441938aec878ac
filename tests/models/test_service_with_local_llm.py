"""A real `admin-api serve` against a real OpenAI-compatible server we did not write: llama.cpp's own server
(the xllamacpp wheel) running SmolLM2-135M, as `make run` and `make demo` use it. JSON and streaming chat/send,
then the stored history, must agree with what the model said."""

from __future__ import annotations

import httpx
import pytest

from tests.service.conftest import database_url, db, login, make_user  # noqa: F401  (fixtures)
from tests.support.serve import serving_async
from tests.support.sse import parse_sse

pytestmark = pytest.mark.timeout(600)

LLM_TIMEOUT = 300  # a 135M model on a shared 2-core CPU: seconds, but generous for a loaded machine


@pytest.fixture
async def client(tmp_path, database_url, redis_url, local_llm, make_user, login):  # noqa: F811
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "LLM_ENDPOINT": local_llm.url,
           "LLM_MODEL": local_llm.model, "LLM_TIMEOUT_SECONDS": str(LLM_TIMEOUT), "COOKIE_SECURE": "false"}
    user = await make_user()
    async with serving_async(env, tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=LLM_TIMEOUT + 30) as http:
            await login(http, user.username, user.password)
            yield http


async def _stored_messages(http: httpx.AsyncClient, cnvs_idt_id: str) -> list[tuple[str, str, str]]:
    detail = (await http.post("/api/v1/history/detail", json={"cnvs_idt_id": cnvs_idt_id})).json()
    return [(m["role"], m["status"], m["content"]) for m in detail["messages"]]


async def test_json_and_streamed_answers_from_llama_cpp(client):
    question = "Name one colour of the sky."
    response = await client.post("/api/v1/chat/send", json={"message": question, "temperature": 0})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["answer"].strip()
    usage = answer["usage"]  # llama.cpp's own token counts, passed on
    assert usage["prompt_tokens"] > len(question.split()) and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    cnvs_idt_id = answer["cnvs_idt_id"]

    # The same conversation, streamed: the earlier turn goes to the model as context.
    follow_up = "And one colour of grass?"
    async with client.stream("POST", "/api/v1/chat/send", json={"cnvs_idt_id": cnvs_idt_id, "message": follow_up,
                                                               "stream": True, "temperature": 0}) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = parse_sse((await stream.aread()).decode())
    names = [event.name for event in events]
    assert names[0] == "start" and names[-1] == "end" and set(names[1:-1]) == {"delta"}, names
    assert len(names) > 3  # the answer came in pieces, as llama.cpp generated it
    streamed = "".join(event.data["content"] for event in events if event.name == "delta")
    end = events[-1].data
    assert streamed.strip() and end["cnvs_idt_id"] == cnvs_idt_id
    assert end["usage"]["prompt_tokens"] > usage["total_tokens"]  # the first turn was in the prompt

    assert await _stored_messages(client, cnvs_idt_id) == [
        ("user", "complete", question),
        ("assistant", "complete", answer["answer"]),
        ("user", "complete", follow_up),
        ("assistant", "complete", streamed),
    ]
