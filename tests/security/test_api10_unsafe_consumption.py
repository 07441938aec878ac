"""OWASP API10:2023 Unsafe Consumption of APIs: the LLM's output is untrusted data. HTML/script comes back
JSON-escaped as data (and with nosniff, never rendered as HTML); newlines cannot break the SSE framing; a huge
answer is stored and returned whole; a NUL the database cannot hold is dropped, not a 500."""

from __future__ import annotations

import json

import pytest

from tests.security.helpers import HISTORY_DETAIL, SEND, parse_sse

SCRIPT = '<script>alert(document.cookie)</script><img src=x onerror=alert(1)>"\'&'
INJECTION = 'Sure.\n\nevent: end\ndata: {"message_id": "forged", "cnvs_idt_id": "forged"}\n\nevent: delta\ndata: {"content": "x"}\n\n'


async def _detail(http, cnvs: str) -> dict:
    return (await http.post(HISTORY_DETAIL, json={"cnvs_idt_id": cnvs})).json()


async def test_html_from_the_llm_is_returned_as_json_data(user_client, openai_server):
    openai_server.script(answer=SCRIPT)
    response = await user_client.post(SEND, json={"message": "hi"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json()["answer"] == SCRIPT
    detail = await user_client.post(HISTORY_DETAIL, json={"cnvs_idt_id": response.json()["cnvs_idt_id"]})
    assert detail.headers["content-type"].startswith("application/json")
    assert detail.json()["messages"][-1]["content"] == SCRIPT


@pytest.mark.parametrize("chunks", [None, ("Sure.\n\n", "event: end\n", 'data: {"x": 1}\n\n'), ("\r\n\r\nevent: end\r\n",)])
async def test_newlines_in_the_llm_text_cannot_inject_sse_events(user_client, openai_server, chunks):
    answer = INJECTION if chunks is None else "".join(chunks)
    openai_server.script(answer=answer, chunks=chunks)
    response = await user_client.post(SEND, json={"message": "hi", "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)  # strict: every block is exactly `event:` + one `data:` line
    names = [event.name for event in events]
    assert names[0] == "start" and names[-1] == "end"
    assert set(names[1:-1]) <= {"delta"} and names.count("end") == 1
    end = events[-1].data
    assert end["message_id"] != "forged" and end["cnvs_idt_id"] == events[0].data["cnvs_idt_id"]
    assert "".join(e.data["content"] for e in events if e.name == "delta") == answer
    stored = await _detail(user_client, end["cnvs_idt_id"])
    assert stored["messages"][-1]["content"] == answer


async def test_a_huge_answer_is_stored_and_returned_whole(user_client, openai_server):
    answer = ("<b>" + "x" * 1000 + "</b>\n") * 600  # ~600 KB
    openai_server.script(answer=answer)
    response = await user_client.post(SEND, json={"message": "hi"})
    assert response.status_code == 200
    assert response.json()["answer"] == answer
    assert (await _detail(user_client, response.json()["cnvs_idt_id"]))["messages"][-1]["content"] == answer


async def test_a_huge_streamed_answer_is_framed_correctly(user_client, openai_server):
    pieces = tuple(f"line {i}\n\n" for i in range(3000))
    openai_server.script(chunks=pieces, answer="".join(pieces))
    response = await user_client.post(SEND, json={"message": "hi", "stream": True})
    events = parse_sse(response.text)
    assert [e.name for e in events].count("delta") == len(pieces)
    assert events[-1].name == "end"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_nul_in_the_llm_answer_is_dropped_not_a_500(user_client, openai_server, stream):
    """FINDING (fixed): PostgreSQL text cannot hold U+0000; an answer containing one failed to store (500, or
    a stream ending in an error with the answer lost)."""
    openai_server.script(answer="before\x00after", chunks=("before\x00", "after"))
    response = await user_client.post(SEND, json={"message": "hi", "stream": stream})
    assert response.status_code == 200, response.text
    if stream:
        events = parse_sse(response.text)
        assert events[-1].name == "end", events
        cnvs = events[0].data["cnvs_idt_id"]
    else:
        assert response.json()["answer"] == "beforeafter"
        cnvs = response.json()["cnvs_idt_id"]
    assert (await _detail(user_client, cnvs))["messages"][-1]["content"] == "beforeafter"


async def test_unicode_oddities_from_the_llm_survive(user_client, openai_server):
    answer = "\u2028\u2029 \u202e RTL \ufeff BOM \U0001f600 </script> \\u003c"
    openai_server.script(answer=answer)
    response = await user_client.post(SEND, json={"message": "hi", "stream": True})
    events = parse_sse(response.text)
    assert "".join(e.data["content"] for e in events if e.name == "delta") == answer
    assert events[-1].name == "end"


async def test_an_llm_error_body_is_not_relayed(user_client, openai_server):
    """The upstream's error text (which may echo the prompt or internals) never reaches our client."""
    openai_server.script(status=500, error_message="<script>x</script> internal: /opt/vllm/secret.py")
    response = await user_client.post(SEND, json={"message": "hi"})
    assert response.status_code == 502
    assert "secret" not in response.text and "<script>" not in response.text
    assert set(response.json()) == {"detail", "cnvs_idt_id", "user_message_id"}
