"""Opaque keyset cursors: base64url of the last row's ("REG_DT", "CNVS_IDT_ID")."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime


def encode_cursor(reg_dt: datetime, cnvs_idt_id: str) -> str:
    raw = json.dumps([reg_dt.isoformat(), cnvs_idt_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError for anything that is not one of our cursors."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        reg_dt_text, cnvs_idt_id = json.loads(raw)
        reg_dt = datetime.fromisoformat(reg_dt_text)
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
        raise ValueError("cursor is not valid; pass back a next_cursor unchanged") from None
    if reg_dt.tzinfo is None or not isinstance(cnvs_idt_id, str) or not cnvs_idt_id or "\x00" in cnvs_idt_id:
        raise ValueError("cursor is not valid; pass back a next_cursor unchanged")
    return reg_dt, cnvs_idt_id
