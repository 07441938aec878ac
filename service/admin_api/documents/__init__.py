"""The user's documents: upload, storage, extraction, chunking, embeddings, the vector index, and the
retrieval that chat uses to answer from them.

    router.py      /api/v1/documents
    service.py     the use cases (upload, list, get, content, delete) and retrieval for chat
    repository.py  SQL ("USR_DOC")
    storage.py     the originals in object storage (minio, off the event loop)
    extraction.py  what a file is (by its bytes) and its text
    chunking.py    text into overlapping, sentence-aligned chunks of about CHUNK_TOKENS tokens
    embeddings.py  the OpenAI-compatible /v1/embeddings client
    index.py       Qdrant: dense and sparse vectors, owner-filtered search
    ingestion.py   the workers that turn an upload into indexed chunks (state in PostgreSQL)
    runtime.py     all of the above, built in the lifespan
"""
