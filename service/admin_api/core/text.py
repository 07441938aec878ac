"""Text that can be stored: PostgreSQL's text type cannot hold NUL (U+0000), so a NUL in a field that reaches
a query would fail there (a 500). Request fields use `StoredText` (422 instead); text from outside the
request (the LLM's answer) goes through `storable`."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

NUL = "\x00"


def _no_nul(value: str) -> str:
    if NUL in value:
        raise ValueError("must not contain NUL (U+0000) characters")
    return value


StoredText = Annotated[str, AfterValidator(_no_nul)]


def storable(text: str) -> str:
    """`text` without NUL characters (an upstream's output is data, not ours to fail on)."""
    return text.replace(NUL, "") if NUL in text else text


def is_storable(text: str) -> bool:
    """True when PostgreSQL can take `text`: no NUL, and valid UTF-8 (no lone surrogate), for values decoded
    by our own code (a cursor's JSON) rather than by the request's schema."""
    if NUL in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
