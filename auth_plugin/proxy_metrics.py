"""Prometheus metrics of one proxy app, in a registry of its own (no process-wide default registry).

Every request is counted by route (the route's template, never the raw path), status and the model version that
answered it ("none" off the prediction path), 401/403/404 included; predictions add their confidence and whether
they were trusted, feedback whether the served version had it right, admin actions their outcome. The gauges
(default version, canary share, in flight and live workers per version) are read from the routing table when
Prometheus scrapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from auth_plugin.control.desired.versions import VersionRegistry


class RoutingGauges(Collector):
    """The routing table as gauges, computed at scrape time: nothing to keep in step."""

    def __init__(self, registry: Callable[[], VersionRegistry | None], model: str) -> None:
        self._registry = registry
        self._model = model

    def collect(self) -> Iterator[GaugeMetricFamily]:
        registry = self._registry()
        if registry is None:
            return
        route = registry.route(self._model)
        default = GaugeMetricFamily("proxy_default_version", "1 for the version that is the default",
                                    labels=["version"])
        canary = GaugeMetricFamily("proxy_canary_percent", "Share of predictions routed to the canary",
                                   labels=["version"])
        in_flight = GaugeMetricFamily("proxy_in_flight", "Predictions being answered, per version",
                                      labels=["version"])
        workers = GaugeMetricFamily("proxy_live_workers", "READY TorchServe workers per version (at the last "
                                    "reconcile)", labels=["version"])
        if route is not None:
            default.add_metric([route.default], 1)
            if route.canary:
                canary.add_metric([route.canary], route.canary_percent)
        for version in registry.versions(self._model):
            in_flight.add_metric([version], registry.in_flight_count(self._model, version))
        for version, live in registry.live_workers(self._model).items():
            workers.add_metric([version], live)
        yield from (default, canary, in_flight, workers)


class ProxyMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("proxy_requests_total", "Requests answered by the proxy",
                                ["route", "status", "model_version"], registry=self.registry)
        self.latency = Histogram("proxy_request_duration_seconds", "Time from request to answer",
                                 ["route", "model_version"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)
        self.confidence = Histogram("proxy_prediction_confidence", "Calibrated confidence of each answer",
                                    ["model_version"], buckets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
                                    registry=self.registry)
        self.unsure = Counter("proxy_predictions_unsure_total", "Answers below min_confidence (photo left as is)",
                              ["model_version"], registry=self.registry)
        self.feedback = Counter("proxy_feedback_total", "Corrections by the version that served the photo and "
                                "whether its turn was right", ["model_version", "agreed"], registry=self.registry)
        self.admin_actions = Counter("proxy_admin_actions_total", "Control-plane actions by outcome",
                                     ["action", "outcome"], registry=self.registry)
        self.auth_failures = Counter("proxy_auth_failures_total", "Refused credentials", ["reason"],
                                     registry=self.registry)
        self.internal_errors = Counter("proxy_internal_errors_total", "Answers of 500: a bug in the proxy",
                                       ["exception"], registry=self.registry)
        self.upstream_errors = Counter("proxy_upstream_errors_total", "TorchServe unreachable, slow or refusing",
                                       ["kind"], registry=self.registry)

    def watch(self, registry: Callable[[], VersionRegistry | None], model: str) -> None:
        """Export the routing table's gauges (read when scraped; None until the app has started)."""
        self.registry.register(RoutingGauges(registry, model))

    def render(self) -> bytes:
        return generate_latest(self.registry)
