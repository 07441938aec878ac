"""Prometheus metrics, in a registry of the app's own (so several apps in one process, as in tests,
do not collide in the global registry)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

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
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (until the response body ends).",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "http_request_errors_total",
            "Requests answered with a 5xx status (including unhandled exceptions).",
            ["method", "route"],
            registry=self.registry,
        )
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
        self._request_children: dict[tuple[str, str, int], tuple] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """The HTTP metrics of one request. The labelled children are looked up once per (method, route,
        status), not built from keyword labels on every request."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (
                self.requests.labels(method=method, route=route, status=str(status)),
                self.request_latency.labels(method=method, route=route),
                self.errors.labels(method=method, route=route) if status >= 500 else None,
            )
        requests, latency, errors = children
        requests.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
