"""Each supported type, decided by the bytes: upload → ready → retrieved into the prompt → sources."""

from __future__ import annotations

import pytest

from tests.service.documents import files

FACT = "The zebra sanctuary opens at nine every Tuesday morning."
FILLER = "Unrelated filler about tax forms and quarterly spreadsheets."
QUESTION = "When does the zebra sanctuary open on Tuesday?"

HTML = (
    "<!DOCTYPE html><html><head><title>Notes</title><style>.zebra { color: red }</style>"
    "<script>var zebra = 'secret script';</script></head>"
    f"<body><h1>Visitor notes</h1><p>{FACT}</p><p>{FILLER}</p><noscript>zebra noscript</noscript></body></html>"
)

CASES = {
    "text": ("notes.txt", f"{FILLER}\n\n{FACT}\n".encode(), "text/plain"),
    "markdown": ("notes.md", f"# Visitor notes\n\n- {FILLER}\n- {FACT}\n".encode(), "text/markdown"),
    "html": ("notes.html", HTML.encode(), "text/html"),
    "pdf": ("notes.pdf", files.pdf([FILLER], [FACT]), "application/pdf"),
    "docx": (
        "notes.docx",
        files.docx_file(FILLER, FACT, table=[["Day", "Opens"], ["Tuesday", "nine"]]),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
async def test_each_type_is_retrieved_with_its_sources(docs, openai_server, kind):
    filename, data, expected_type = CASES[kind]
    # The client's Content-Type is ignored: the bytes decide.
    uploaded = await docs.upload_ok(docs.alice, filename, data, content_type="application/octet-stream")
    assert uploaded["content_type"] == expected_type
    ready = await docs.wait_done(docs.alice, uploaded["document_id"])
    assert ready["status"] == "ready", ready

    response = await docs.ask(docs.alice, QUESTION)
    assert response.status_code == 200, response.text
    sources = response.json()["sources"]
    assert sources and sources[0]["document_id"] == uploaded["document_id"]
    assert sources[0]["filename"] == filename
    assert FACT in sources[0]["text"]
    context = openai_server.chat_requests[-1].messages[-2]
    assert context["role"] == "system" and f"[1] {filename}" in context["content"] and FACT in context["content"]


async def test_html_keeps_text_only(docs):
    uploaded = await docs.upload_ok(docs.alice, "page.html", HTML.encode())
    await docs.wait_done(docs.alice, uploaded["document_id"])
    response = await docs.ask(docs.alice, "zebra")
    texts = " ".join(source["text"] for source in response.json()["sources"])
    assert FACT in texts
    assert "secret script" not in texts and "color: red" not in texts and "noscript" not in texts


async def test_docx_tables_are_text(docs):
    data = files.docx_file("Opening hours below.", table=[["Weekday", "Gate"], ["Thursday", "North gate"]])
    uploaded = await docs.upload_ok(docs.alice, "hours.docx", data)
    await docs.wait_done(docs.alice, uploaded["document_id"])
    response = await docs.ask(docs.alice, "Which gate on Thursday?")
    assert "Thursday | North gate" in response.json()["sources"][0]["text"]
