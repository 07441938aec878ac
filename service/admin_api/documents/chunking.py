"""Text into chunks of about CHUNK_TOKENS tokens that end at sentence (ideally paragraph) boundaries,
each starting with up to CHUNK_OVERLAP_TOKENS tokens of the previous one's last sentences.

Tokens are counted offline: with CHUNK_TOKENIZER_FILE (a Hugging Face tokenizer.json, e.g. the
embedding model's own) exactly as that model counts them; otherwise as BERT's pre-tokenizer splits
text (words and punctuation), a close lower bound for WordPiece and BPE models on English text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tokenizers import Tokenizer
from tokenizers.pre_tokenizers import BertPreTokenizer

_PARAGRAPHS = re.compile(r"\n\s*\n")
# After ., ! or ? (maybe closed by a quote or bracket) and before what starts a sentence; or a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9À-Ý])|\n")


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    starts_paragraph: bool


class Chunker:
    def __init__(self, max_tokens: int, overlap_tokens: int, tokenizer_file: str | None = None) -> None:
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self._tokenizer = Tokenizer.from_file(tokenizer_file) if tokenizer_file else None
        self._pre_tokenizer = BertPreTokenizer()

    def count(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        return len(self._pre_tokenizer.pre_tokenize_str(text))

    def split(self, text: str) -> list[str]:
        chunks: list[str] = []
        current: list[_Unit] = []
        size = 0
        fresh = False  # `current` holds more than the previous chunk's overlap
        for paragraph in self._paragraphs(text):
            paragraph_tokens = sum(unit.tokens for unit in paragraph)
            # A paragraph that does not fit starts a new chunk if this one is already half full.
            if current and size + paragraph_tokens > self.max_tokens and size >= self.max_tokens // 2:
                chunks.append(_join(current))
                current = self._overlap(current)
                size = sum(unit.tokens for unit in current)
                fresh = False
            for unit in paragraph:
                if current and size + unit.tokens > self.max_tokens:
                    chunks.append(_join(current))
                    current = self._overlap(current)
                    size = sum(unit.tokens for unit in current)
                    fresh = False
                    if size + unit.tokens > self.max_tokens:  # the overlap leaves no room: drop it
                        current, size = [], 0
                current.append(unit)
                size += unit.tokens
                fresh = True
        if current and fresh:
            chunks.append(_join(current))
        return chunks

    def _paragraphs(self, text: str) -> list[list[_Unit]]:
        paragraphs = []
        for paragraph in _PARAGRAPHS.split(text):
            sentences = [s.strip() for s in _SENTENCE_END.split(paragraph) if s and s.strip()]
            units: list[_Unit] = []
            for sentence in sentences:
                for piece in self._fit(sentence):
                    units.append(_Unit(piece, self.count(piece), starts_paragraph=not units))
            if units:
                paragraphs.append(units)
        return paragraphs

    def _fit(self, sentence: str) -> list[str]:
        """A sentence longer than a chunk, cut into chunk-sized runs of words."""
        if self.count(sentence) <= self.max_tokens:
            return [sentence]
        pieces, words = [], sentence.split()
        piece: list[str] = []
        for word in words:
            if piece and self.count(" ".join([*piece, word])) > self.max_tokens:
                pieces.append(" ".join(piece))
                piece = []
            piece.append(word)
        if piece:
            pieces.append(" ".join(piece))
        return pieces

    def _overlap(self, units: list[_Unit]) -> list[_Unit]:
        """The last whole sentences of a chunk, up to overlap_tokens (never the whole chunk)."""
        kept: list[_Unit] = []
        size = 0
        for unit in reversed(units[1:]):
            if size + unit.tokens > self.overlap_tokens:
                break
            kept.insert(0, unit)
            size += unit.tokens
        return kept


def _join(units: list[_Unit]) -> str:
    text = ""
    for unit in units:
        separator = "" if not text else ("\n\n" if unit.starts_paragraph else " ")
        text += separator + unit.text
    return text

