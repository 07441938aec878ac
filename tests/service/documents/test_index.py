"""The vector index's shared layout (a Qdrant server: one collection per model, owners as tenants), run on the
embedded engine, which takes the same calls: no Qdrant server can be installed here."""

from __future__ import annotations

import pytest

from admin_api.documents.index import VectorIndex


@pytest.mark.parametrize("hybrid", [True, False])
async def test_the_shared_layout_indexes_owners_and_filters_by_them(tmp_path, hybrid):
    """FINDING (fixed): the owner's payload index was declared with an option integer indexes do not have
    (is_tenant), so with QDRANT_HOST set the first document of every model failed to index."""
    index = VectorIndex(host=None, port=6333, api_key=None, https=False, path=str(tmp_path))
    index.shared = True  # the server's layout, on the embedded engine
    try:
        await index.add("model_3", 1, "doc-a", ["alpha apples"], [[1.0, 0.0, 0.0]])
        await index.add("model_3", 2, "doc-b", ["alpha apples too"], [[1.0, 0.0, 0.0]])
        assert index.collection("model_3", 1) == index.collection("model_3", 2) == "model_3"
        for user, document in ((1, "doc-a"), (2, "doc-b")):
            hits = await index.search("model_3", user, vector=[1.0, 0.0, 0.0], text="alpha apples", top_k=5,
                                      document_ids=None, hybrid=hybrid)
            assert [hit.document_id for hit in hits] == [document]
    finally:
        await index.close()
