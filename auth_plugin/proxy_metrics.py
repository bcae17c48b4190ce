"""Prometheus metrics of one proxy app, in a registry of its own (no process-wide default registry)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest


class ProxyMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("proxy_requests_total", "Requests answered by the proxy",
                                ["route", "status", "model_version"], registry=self.registry)
        self.latency = Histogram("proxy_request_duration_seconds", "Time from request to answer", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.auth_failures = Counter("proxy_auth_failures_total", "Refused credentials", ["reason"],
                                     registry=self.registry)
        self.internal_errors = Counter("proxy_internal_errors_total", "Answers of 500: a bug in the proxy",
                                       ["exception"], registry=self.registry)
        self.upstream_errors = Counter("proxy_upstream_errors_total", "TorchServe unreachable, slow or refusing",
                                       ["kind"], registry=self.registry)

    def render(self) -> bytes:
        return generate_latest(self.registry)
