"""The figures of one `make bench` run: each against its baseline from the same run, printed as one table
at the end of the session and written to .run/bench.json."""

from __future__ import annotations

import json
import platform
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.bench.load import Stats


@dataclass
class Figure:
    what: str
    ours: float
    baseline: float
    unit: str  # "ms" (lower is better), "req/s" (higher is better), ...
    baseline_is: str  # what the baseline is
    compare: str = "ratio"  # "ratio" ours/baseline, or "delta" ours - baseline
    target: str = ""  # e.g. "<= 3 ms", ">= 0.9x"
    met: bool | None = None
    details: dict = field(default_factory=dict)  # full statistics of both, for the JSON

    @property
    def headline(self) -> str:
        if self.compare == "delta":
            return f"{self.ours - self.baseline:+.2f} {self.unit}"
        return f"{self.ours / self.baseline:.2f}x" if self.baseline else "-"


class Report:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.figures: list[Figure] = []
        self.started = time.time()

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def table(self) -> str:
        rows = [("what", "ours", "baseline", "vs baseline", "target", "met", "baseline is")]
        for f in self.figures:
            met = "" if f.met is None else ("yes" if f.met else "NO")
            rows.append((f.what, f"{f.ours:.2f} {f.unit}", f"{f.baseline:.2f} {f.unit}", f.headline, f.target,
                         met, f.baseline_is))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        return "\n".join(lines)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "figures": [{**asdict(f), "headline": f.headline} for f in self.figures],
        }
        self.path.write_text(json.dumps(payload, indent=2) + "\n")


def latency(report: Report, what: str, ours: Stats, base: Stats, baseline_is: str, *, compare_by: str = "ratio",
            target: float | None = None, quantile: float = 0.5) -> None:
    """A latency figure from two Stats: their median, or another quantile (e.g. 0.95 for p95)."""
    if quantile == 0.5:
        name, mine, theirs = "p50", ours.p50, base.p50
    else:
        name, mine, theirs = f"p{quantile * 100:g}", ours.quantile(quantile), base.quantile(quantile)
    if compare_by == "delta":
        met = None if target is None else mine - theirs <= target
        target_text = "" if target is None else f"<= +{target:g} ms"
    else:
        met = None if target is None else mine / theirs <= target
        target_text = "" if target is None else f"<= {target:g}x"
    report.add(Figure(f"{what}, {name}", mine, theirs, "ms", baseline_is, compare_by, target_text, met,
                      {"ours": ours.as_json(), "baseline": base.as_json()}))


def server_cpu(report: Report, what: str, ours: Stats, base: Stats, baseline_is: str, *,
               compare_by: str = "ratio") -> None:
    """The servers' own CPU per request, from the same rounds (compare(..., servers=...))."""
    report.add(Figure(f"{what}, server CPU per request", ours.cpu_us_per_request, base.cpu_us_per_request, "us",
                      baseline_is, compare_by, details={"ours": ours.as_json(), "baseline": base.as_json()}))


def throughput(report: Report, what: str, ours: Stats, base: Stats, baseline_is: str, target: float | None = None):
    met = None if target is None else ours.rps / base.rps >= target
    report.add(Figure(f"{what}, throughput", ours.rps, base.rps, "req/s", baseline_is, "ratio",
                      "" if target is None else f">= {target:g}x", met,
                      {"ours": ours.as_json(), "baseline": base.as_json()}))
