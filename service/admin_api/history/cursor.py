"""Opaque keyset cursors: base64url of the last row's ("REG_DT", "CNVS_IDT_ID") for history/list, of the
oldest message's ("REG_DT", "MSG_IDT_ID") for history/detail.

A cursor comes back from the client, so everything in it is checked before it reaches a query: a
timestamp PostgreSQL and asyncpg can represent (asyncpg converts to UTC, which overflows near year 1 and
9999), and an id that fits the column and can be stored.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from admin_api.core.text import is_storable

INVALID = "cursor is not valid; pass back a next_cursor unchanged"
MAX_ID_LENGTH = 64  # "CNVS_IDT_ID" and message ids are VARCHAR(64)
# Far inside what PostgreSQL (4713 BC..294276 AD) and Python (1..9999) both hold, in UTC.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def encode_cursor(reg_dt: datetime, row_id: str) -> str:
    raw = json.dumps([reg_dt.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(timestamp in UTC, id); raises ValueError for anything that is not one of our cursors."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        reg_dt_text, row_id = json.loads(raw)
        reg_dt = datetime.fromisoformat(reg_dt_text)
        if reg_dt.tzinfo is None:
            raise ValueError("naive timestamp")
        reg_dt = reg_dt.astimezone(UTC)  # OverflowError at the ends of the calendar
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError):
        raise ValueError(INVALID) from None
    if not EARLIEST <= reg_dt <= LATEST:
        raise ValueError(INVALID)
    if not isinstance(row_id, str) or not 0 < len(row_id) <= MAX_ID_LENGTH or not is_storable(row_id):
        raise ValueError(INVALID)
    return reg_dt, row_id
