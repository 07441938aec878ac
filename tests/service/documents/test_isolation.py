"""Another user's document is 404 at every endpoint and never retrieved."""

from __future__ import annotations

from tests.service.documents.conftest import DOCUMENTS, SEND


async def test_other_users_document_is_404_everywhere(docs):
    mine = await docs.ingest(docs.alice, "alice.txt", b"Alice keeps the spare key under the blue flowerpot.")
    doc_id = mine["document_id"]

    assert (await docs.bob.get(f"{DOCUMENTS}/{doc_id}")).status_code == 404
    assert (await docs.bob.get(f"{DOCUMENTS}/{doc_id}/content")).status_code == 404
    assert (await docs.bob.delete(f"{DOCUMENTS}/{doc_id}")).status_code == 404
    assert (await docs.bob.get(DOCUMENTS)).json()["items"] == []
    answer = await docs.bob.post(SEND, json={"message": "Where is the key?", "document_ids": [doc_id]})
    assert answer.status_code == 404
    assert answer.json()["detail"] == "Document not found."
    # A mix of one's own and another's ids is still 404 (nothing leaks about which one).
    own = await docs.ingest(docs.bob, "bob.txt", b"Bob's notes about the key ring.")
    mixed = await docs.bob.post(SEND, json={"message": "key?", "document_ids": [own["document_id"], doc_id]})
    assert mixed.status_code == 404

    # Still Alice's, untouched.
    assert (await docs.alice.get(f"{DOCUMENTS}/{doc_id}")).json()["status"] == "ready"
    assert (await docs.alice.get(f"{DOCUMENTS}/{doc_id}/content")).content.startswith(b"Alice keeps")


async def test_retrieval_only_searches_the_callers_documents(docs):
    await docs.ingest(docs.alice, "alice.txt", b"The vault combination is seven three nine.")
    await docs.ingest(docs.bob, "bob.txt", b"Bob likes hiking in the hills on weekends.")
    response = await docs.ask(docs.bob, "What is the vault combination?")
    assert response.status_code == 200
    sources = response.json()["sources"]
    assert sources and all(source["filename"] == "bob.txt" for source in sources)
    assert all("vault" not in source["text"] for source in sources)


async def test_unknown_document_id_is_404(docs):
    assert (await docs.alice.get(f"{DOCUMENTS}/nope")).status_code == 404
    response = await docs.alice.post(SEND, json={"message": "hi", "document_ids": ["nope"]})
    assert response.status_code == 404


async def test_hostile_document_ids_are_4xx_not_5xx(docs):
    """FINDING (fixed): a NUL in the path's id reached PostgreSQL (which cannot store it): a 500."""
    for document_id in ["%00", "a%00b", "%ED%A0%80", "%F0%9F%98%80", "x" * 64, "x" * 65, "..%2F..%2Fetc"]:
        for method, path in [("GET", f"{DOCUMENTS}/{document_id}"), ("GET", f"{DOCUMENTS}/{document_id}/content"),
                             ("DELETE", f"{DOCUMENTS}/{document_id}")]:
            response = await docs.alice.request(method, path)
            assert 400 <= response.status_code < 500, (method, path, response.status_code, response.text[:200])
    for cursor in ["%00", "AAAA", "x" * 500]:
        response = await docs.alice.get(f"{DOCUMENTS}?cursor={cursor}")
        assert 400 <= response.status_code < 500 or response.status_code == 200, (cursor, response.text[:200])
