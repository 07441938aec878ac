"""The HTTP metrics' own collector exports what prometheus_client's Counter and Histogram would, sample for sample."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from admin_api.core.metrics import LATENCY_BUCKETS, Metrics

OBSERVED = [
    ("GET", "/health/live", 200, 0.0004),
    ("GET", "/health/live", 200, 0.005),  # on a bucket's bound: counted in it
    ("GET", "/health/live", 200, 0.0050001),
    ("POST", "/api/v1/chat/send", 200, 0.7),
    ("POST", "/api/v1/chat/send", 503, 2.5),
    ("POST", "/api/v1/chat/send", 500, 42.0),  # past the last bound: +Inf only
    ("GET", "<unmatched>", 404, 0.001),
]


def _samples(text: bytes) -> set[tuple[str, tuple, float]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if not sample.name.endswith("_created")  # the client's creation timestamps: not part of the contract
    }


def _with_prometheus_client() -> bytes:
    registry = CollectorRegistry()
    requests = Counter("http_requests_total", "", ["method", "route", "status"], registry=registry)
    latency = Histogram("http_request_duration_seconds", "", ["method", "route"], buckets=LATENCY_BUCKETS,
                        registry=registry)
    errors = Counter("http_request_errors_total", "", ["method", "route"], registry=registry)
    for method, route, status, seconds in OBSERVED:
        requests.labels(method, route, str(status)).inc()
        latency.labels(method, route).observe(seconds)
        if status >= 500:
            errors.labels(method, route).inc()
    return generate_latest(registry)


def test_http_metrics_match_prometheus_client_sample_for_sample():
    metrics = Metrics()
    for observation in OBSERVED:
        metrics.observe_request(*observation)
    ours = {sample for sample in _samples(metrics.render()) if sample[0].startswith("http_")}
    expected = _samples(_with_prometheus_client())
    assert ours == expected
    assert ("http_request_errors_total", (("method", "POST"), ("route", "/api/v1/chat/send")), 2.0) in ours
