"""Upload a text file → ready → chat retrieves it into the prompt → the answer's sources."""

from __future__ import annotations

from tests.service.documents.conftest import DOCUMENTS

LLAMA = (
    "Llamas are domesticated South American camelids. They were used as pack animals by the Inca.\n\n"
    "A llama's diet is grass and hay; an adult eats about two percent of its body weight a day.\n\n"
    "Volcanoes in Iceland erupt along the Mid-Atlantic Ridge, where two tectonic plates drift apart."
)


async def test_text_upload_is_ingested_and_answers_cite_it(docs, openai_server, db):
    uploaded = await docs.upload_ok(docs.alice, "llamas.txt", LLAMA.encode())
    assert uploaded["status"] == "processing"
    assert uploaded["filename"] == "llamas.txt"
    assert uploaded["content_type"] == "text/plain"
    assert uploaded["size_bytes"] == len(LLAMA.encode())
    ready = await docs.wait_done(docs.alice, uploaded["document_id"])
    assert ready["status"] == "ready", ready
    assert ready["chunks"] >= 1 and ready["error"] is None

    response = await docs.ask(docs.alice, "What does a llama eat, grass or hay?")
    assert response.status_code == 200, response.text
    sources = response.json()["sources"]
    assert sources, "retrieval found nothing"
    assert sources[0]["document_id"] == uploaded["document_id"]
    assert sources[0]["filename"] == "llamas.txt"
    assert "grass" in sources[0]["text"]

    # Exactly those chunks, numbered in that order, went into the prompt.
    prompt = openai_server.chat_requests[-1].messages
    context = next(m["content"] for m in prompt if m["role"] == "system")
    for number, source in enumerate(sources, start=1):
        assert f"[{number}] llamas.txt (part {source['chunk_index'] + 1}):\n{source['text']}" in context
    assert prompt[-1] == {"role": "user", "content": "What does a llama eat, grass or hay?"}
    listed = await docs.alice.get(DOCUMENTS)
    assert [item["document_id"] for item in listed.json()["items"]] == [uploaded["document_id"]]
