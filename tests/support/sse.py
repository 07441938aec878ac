"""Our server-sent events, parsed strictly as a browser's EventSource would: blocks split by a blank line,
each exactly one `event:` and one `data:` (JSON) field; comment lines (keep-alives) are skipped."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    name: str
    data: dict[str, Any]


def parse_sse(text: str) -> list[Event]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = [line.split(": ", 1) for line in lines]
        assert [name for name, _ in fields] == ["event", "data"], block
        events.append(Event(fields[0][1], json.loads(fields[1][1])))
    return events
