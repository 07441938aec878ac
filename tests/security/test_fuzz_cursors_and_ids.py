"""Property-based: whatever a client puts in a cursor or an id, the answer is a 4xx or a 2xx, never a 5xx.

FINDING (fixed): a well-formed cursor whose timestamp PostgreSQL (through asyncpg's conversion to UTC)
cannot represent, e.g. year 1 or 9999 with an offset, or whose id held a lone surrogate, was a 500 with a
traceback. Cursors are generated both as arbitrary text and as *well-formed* cursors (base64url of the
JSON pair) around arbitrary timestamps, offsets and ids, so the decoder's every branch is reached.

The app runs on the test's event loop; hypothesis drives it from a worker thread (it has no async API).
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.helpers import HISTORY_DELETE, HISTORY_DETAIL, HISTORY_LIST, HISTORY_RENAME, SEND, post_raw_json

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# Any text, with lone surrogates and NUL over-represented (JSON escapes carry them over the wire).
awkward = st.one_of(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), st.sampled_from("\x00\\\"'%_"))
any_text = st.text(alphabet=st.one_of(st.characters(), awkward), max_size=24)
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
# Biased to the ends of the calendar, where a UTC conversion overflows.
calendar_ends = st.one_of(
    st.datetimes(max_value=datetime(1, 1, 2)), st.datetimes(min_value=datetime(9999, 12, 30)), st.datetimes()
)
timestamps = st.one_of(
    calendar_ends.flatmap(lambda moment: offsets.map(lambda tz: moment.replace(tzinfo=tz).isoformat())),
    st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+00:00",
                     "9999-12-31T23:59:59.999999+00:00", "2025-01-01T00:00:00", "2025-01-01"]),
    any_text,
)
json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), any_text,
                        st.lists(st.integers(), max_size=3))


def _as_cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


well_formed_cursors = st.builds(
    lambda ts, row_id: _as_cursor([ts, row_id]), timestamps, st.one_of(any_text, any_text, st.uuids().map(str), json_values)
)
cursors = st.one_of(well_formed_cursors, st.lists(json_values, max_size=3).map(_as_cursor), any_text)
ids = st.one_of(any_text, json_values, st.uuids().map(str))

requests = st.one_of(
    st.builds(lambda c: (HISTORY_LIST, {"cursor": c}), cursors),
    st.builds(lambda c: (HISTORY_LIST, {"cursor": c}), well_formed_cursors),
    st.builds(lambda c, n: (HISTORY_LIST, {"cursor": c, "page_size": n}), well_formed_cursors, st.integers(-1, 101)),
    st.builds(lambda i: (HISTORY_DETAIL, {"cnvs_idt_id": i}), ids),
    st.builds(lambda i, c: (HISTORY_DETAIL, {"cnvs_idt_id": i, "cursor": c}), ids, cursors),
    st.builds(lambda i: (HISTORY_RENAME, {"cnvs_idt_id": i, "title": "t"}), ids),
    st.builds(lambda i: (HISTORY_DELETE, {"cnvs_idt_id": i}), ids),
    st.builds(lambda i: (SEND, {"cnvs_idt_id": i, "message": "m"}), ids),
)


async def test_no_cursor_or_id_is_a_5xx(user_client, seed_conversation):
    loop = asyncio.get_running_loop()
    seen: list[int] = []
    # history/detail reads a cursor only on a conversation the caller may see: give it one of its own.
    own = await seed_conversation(user_client.user.id, messages=[("user", "q"), ("assistant", "a")])
    own_detail = st.builds(lambda c, n: (HISTORY_DETAIL, {"cnvs_idt_id": own, "cursor": c, "limit": n}),
                           st.one_of(st.none(), cursors, well_formed_cursors), st.integers(-1, 501))

    @FUZZ
    @given(request=st.one_of(requests, own_detail))
    def run(request) -> None:
        path, body = request
        response = asyncio.run_coroutine_threadsafe(post_raw_json(user_client, path, body), loop).result(60)
        seen.append(response.status_code)
        assert response.status_code < 500, (path, body, response.status_code, response.text[:300])
        if response.status_code == 422:
            assert response.json()["detail"][0]["loc"][0] == "body", response.text

    await asyncio.to_thread(run)
    assert 422 in seen and any(code < 300 for code in seen), sorted(set(seen))


async def test_the_calendars_ends_are_422(user_client):
    for stamp in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+00:00"):
        response = await user_client.post(HISTORY_LIST, json={"cursor": _as_cursor([stamp, "x"])})
        assert response.status_code == 422, (stamp, response.text)
    for row_id in ("\ud800", "x\udfff", "a" * 65, ""):
        cursor = _as_cursor(["2025-01-01T00:00:00+00:00", row_id])
        response = await post_raw_json(user_client, HISTORY_LIST, {"cursor": cursor})
        assert response.status_code == 422, (row_id, response.text)
