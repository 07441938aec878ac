"""Prometheus metrics, in a registry of the app's own (so several apps in one process, as in tests,
do not collide in the global registry)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
LLM_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


class Metrics:
    """Every metric the service exports.

    HTTP metrics are recorded by the request middleware; `route` is the route template (e.g.
    "/api/v1/history/list"), or "<unmatched>" so unknown paths cannot blow up the label set.

    `llm_latency` is for the chat package: observe the seconds an LLM call took, labelled with
    `outcome`: "ok", "unavailable" (503), "timeout" (504), "upstream_error" (502) or "cancelled" (the
    client left, or the server shut down), e.g.
        resources.metrics.llm_latency.labels(outcome="ok").observe(elapsed)
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http = HttpMetrics()
        self.registry.register(self.http)
        self.chat_limited = Counter(
            "chat_send_limited_total",
            "chat/send requests refused with 429 by the per-user limits, by reason (rate, concurrency).",
            ["reason"],
            registry=self.registry,
        )
        self.llm_latency = Histogram(
            "llm_request_duration_seconds",
            "Time an LLM chat completion took, by outcome.",
            ["outcome"],
            buckets=LLM_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.http.observe(method, route, status, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpMetrics:
    """The HTTP metrics, a prometheus_client collector: each request adds to plain numbers, and the metric families
    are built when scraped. The client's own labelled Counter and Histogram take a lock for each of the three
    increments a request makes; every request runs on the event loop's thread, and so does a scrape."""

    def __init__(self) -> None:
        self._requests: dict[tuple[str, str, str], int] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # per-bucket counts (not cumulative), then the sum

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        latency = self._latency.get(key[:2])
        if latency is None:
            latency = self._latency[key[:2]] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1  # the first bucket with seconds <= le
        latency[-1] += seconds
        if status >= 500:
            self._errors[key[:2]] = self._errors.get(key[:2], 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "http_requests", "HTTP requests by method, route template and status code.",
            labels=["method", "route", "status"])
        for labels, count in self._requests.items():
            requests.add_metric(labels, count)
        latency = HistogramMetricFamily(
            "http_request_duration_seconds", "Time to answer an HTTP request (until the response body ends).",
            labels=["method", "route"])
        for labels, counts in self._latency.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*LATENCY_BUCKETS, math.inf), counts):
                cumulative += count
                buckets.append(("+Inf" if bound == math.inf else str(float(bound)), cumulative))
            latency.add_metric(labels, buckets, sum_value=counts[-1])
        errors = CounterMetricFamily(
            "http_request_errors", "Requests answered with a 5xx status (including unhandled exceptions).",
            labels=["method", "route"])
        for labels, count in self._errors.items():
            errors.add_metric(labels, count)
        yield from (requests, latency, errors)
