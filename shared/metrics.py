"""Prometheus helpers: one registry per app (no process-global state), names start `ferry_`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SIZE_BUCKETS = tuple(float(2**power) for power in range(10, 32, 2))  # 1 KiB .. 1 GiB


class HttpMetrics:
    """Request counts and latencies by route template (bounded labels: never ids), and what
    the last readiness probe found."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "ferry_http_requests_total",
            "HTTP requests handled, by route template, method and status code",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "ferry_http_request_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ready = Gauge(
            "ferry_ready",
            "1 when the readiness checks (run by /readyz and by each scrape) pass, else 0",
            registry=registry,
        )
