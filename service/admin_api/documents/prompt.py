"""How retrieved chunks go into the LLM's prompt: numbered [1], [2], ... in the order of `sources`,
which is the order the answer's `sources` list them in, so a citation [n] points at sources[n-1]."""

from __future__ import annotations

from admin_api.documents.schemas import Source

INSTRUCTIONS = (
    "Answer the user's next message using the numbered excerpts from their documents below when they are "
    "relevant, and cite the excerpts you use by their numbers, like [1]. If the excerpts do not contain "
    "the answer, say so; do not make one up."
)
NOTHING_FOUND = "The user asked to answer from their documents, but no relevant excerpt was found in them; say so."


def context_message(sources: list[Source]) -> dict[str, str]:
    if not sources:
        return {"role": "system", "content": NOTHING_FOUND}
    excerpts = "\n\n".join(
        f"[{number}] {source.filename} (part {source.chunk_index + 1}):\n{source.text}"
        for number, source in enumerate(sources, start=1)
    )
    return {"role": "system", "content": f"{INSTRUCTIONS}\n\n{excerpts}"}
