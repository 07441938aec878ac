"""Chunks: bounded in tokens, cut at sentence ends (and paragraph ends when it can), overlapping."""

from __future__ import annotations

import json

from admin_api.documents.chunking import Chunker


def test_chunks_are_bounded_and_end_at_sentences():
    chunker = Chunker(max_tokens=40, overlap_tokens=10)
    text = " ".join(f"Sentence number {i} says something small." for i in range(40))
    chunks = chunker.split(text)
    assert len(chunks) > 3
    assert all(chunker.count(chunk) <= 40 for chunk in chunks)
    assert all(chunk.endswith(".") for chunk in chunks)
    # Overlap: each chunk starts with the last sentence of the previous one.
    for previous, current in zip(chunks, chunks[1:]):
        assert previous.rsplit(". ", 1)[-1] in current.split(". ")[0] + "."
    # Nothing lost.
    for i in range(40):
        assert any(f"Sentence number {i} says" in chunk for chunk in chunks)


def test_paragraphs_are_kept_together_when_they_fit():
    chunker = Chunker(max_tokens=16, overlap_tokens=0)  # 9 + 16 tokens: two chunks
    first = "Alpha one. Alpha two. Alpha three."
    second = "Beta one is a longer sentence. Beta two is also longer than the rest."
    chunks = chunker.split(f"{first}\n\n{second}")
    assert chunks == [first, second]


def test_a_sentence_longer_than_a_chunk_is_cut_into_words():
    chunker = Chunker(max_tokens=20, overlap_tokens=5)
    chunks = chunker.split(" ".join(["word"] * 100))
    assert all(chunker.count(chunk) <= 20 for chunk in chunks)
    assert sum(chunk.count("word") for chunk in chunks) >= 100


def test_a_tokenizer_file_counts_exactly(tmp_path):
    # A tiny word-level tokenizer in Hugging Face's format: every word one id, unknowns one [UNK].
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "hello": 1}, "unk_token": "[UNK]"},
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    chunker = Chunker(max_tokens=10, overlap_tokens=0, tokenizer_file=str(path))
    assert chunker.count("hello big world!") == 4
