"""The documents API: listing (own, newest first, keyset cursor), content, chat (multi-turn, streamed,
history), and the answer's sources exactly as prompted."""

from __future__ import annotations

from urllib.parse import quote, unquote

from tests.service.documents.conftest import DOCUMENTS, SEND
from tests.support.sse import parse_sse


async def test_list_newest_first_with_a_cursor(docs):
    ids = [(await docs.upload_ok(docs.alice, f"n{i}.txt", f"note {i}".encode()))["document_id"] for i in range(5)]
    first = (await docs.alice.get(DOCUMENTS, params={"limit": 2})).json()
    second = (await docs.alice.get(DOCUMENTS, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    third = (await docs.alice.get(DOCUMENTS, params={"limit": 2, "cursor": second["next_cursor"]})).json()
    listed = [item["document_id"] for page in (first, second, third) for item in page["items"]]
    assert listed == list(reversed(ids))
    assert third["next_cursor"] is None
    assert (await docs.alice.get(DOCUMENTS, params={"cursor": "garbage"})).status_code == 422


async def test_content_is_the_original_bytes_as_an_attachment(docs):
    data = "Grüße aus Köln\r\nline two\n".encode()
    uploaded = await docs.upload_ok(docs.alice, "Grüße; \"quoted\"\r\n<b>.txt", data)
    stored_name = uploaded["filename"]  # as the client encoded it in the part header
    response = await docs.alice.get(f"{DOCUMENTS}/{uploaded['document_id']}/content")
    assert response.status_code == 200
    assert response.content == data
    disposition = response.headers["content-disposition"]
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.isascii() and ";" not in fallback and "\r" not in disposition and "\n" not in disposition
    assert disposition.startswith("attachment; ")
    assert disposition.endswith("filename*=UTF-8''" + quote(stored_name, safe=""))
    assert unquote(disposition.rsplit("''", 1)[1]) == stored_name
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_retrieval_runs_on_every_turn_and_history_keeps_sources(docs, openai_server):
    await docs.ingest(docs.alice, "pets.txt", b"The cat is named Miso.\n\nThe parrot is named Kiwi.")
    first = (await docs.ask(docs.alice, "What is the cat named?")).json()
    second = (await docs.ask(docs.alice, "What is the parrot named?", cnvs_idt_id=first["cnvs_idt_id"])).json()
    plain = (await docs.alice.post(SEND, json={"message": "Thanks!", "cnvs_idt_id": first["cnvs_idt_id"]})).json()
    assert first["sources"] and second["sources"] and plain["sources"] == []
    assert "Kiwi" in second["sources"][0]["text"]
    prompts = openai_server.chat_requests
    assert "Kiwi" in prompts[1].messages[-2]["content"] and prompts[1].messages[-2]["role"] == "system"
    assert all(m["role"] != "system" for m in prompts[2].messages)  # no documents asked: none sent

    detail = (await docs.alice.post("/api/v1/history/detail", json={"cnvs_idt_id": first["cnvs_idt_id"]})).json()
    answers = [m for m in detail["messages"] if m["role"] == "assistant"]
    assert answers[0]["sources"] == first["sources"]
    assert answers[1]["sources"] == second["sources"]
    assert answers[2]["sources"] is None


async def test_stream_sends_sources_before_the_first_delta(docs, openai_server):
    await docs.ingest(docs.alice, "trains.txt", b"The night train to Vienna leaves at 22:10 from platform 4.")
    openai_server.script(answer="It leaves at 22:10 [1].")
    async with docs.alice.stream("POST", SEND, json={"message": "When does the night train leave?",
                                                     "use_documents": True, "stream": True}) as response:
        body = (await response.aread()).decode()
    events = parse_sse(body)
    names = [event.name for event in events]
    assert names[0] == "start" and names[1] == "sources" and names.index("sources") < names.index("delta")
    sources = events[1].data["sources"]
    assert sources[0]["filename"] == "trains.txt" and "22:10" in sources[0]["text"]
    detail = (await docs.alice.post("/api/v1/history/detail", json={"cnvs_idt_id": events[0].data["cnvs_idt_id"]})).json()
    assert detail["messages"][-1]["sources"] == sources


async def test_document_ids_limit_the_search(docs):
    one = await docs.ingest(docs.alice, "one.txt", b"Apples grow in the orchard by the river.")
    await docs.ingest(docs.alice, "two.txt", b"Apples are sold at the market on Fridays.")
    response = await docs.alice.post(SEND, json={"message": "apples", "document_ids": [one["document_id"]]})
    assert {source["document_id"] for source in response.json()["sources"]} == {one["document_id"]}


async def test_embeddings_down_is_a_clear_503_for_chat(docs, openai_server):
    await docs.ingest(docs.alice, "a.txt", b"Something to search.")
    openai_server.fail_embeddings(503)
    response = await docs.ask(docs.alice, "search")
    assert response.status_code == 503
    assert response.json()["detail"] == "The embedding model is unavailable. Please try again later."
    assert len(openai_server.chat_requests) == 0


async def test_documents_not_configured_is_503(client, make_user, login):
    user = await make_user()
    await login(client, user.username, user.password)
    assert (await client.get(DOCUMENTS)).status_code == 503
    assert (await client.post(SEND, json={"message": "hi", "use_documents": True})).status_code == 503
