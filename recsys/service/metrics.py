"""Prometheus metrics of the service (``prometheus-client``), one registry per app.

``recsys_requests_total{endpoint,partner,status}``, ``recsys_request_seconds{endpoint,partner}`` (histogram),
``recsys_fallbacks_total{partner,fallback}``, ``recsys_rejected_total{reason}`` (503 overload, 504 deadline),
``recsys_model_info{version,name}`` (1 for the version serving), ``recsys_queue_depth`` and
``recsys_in_flight``, ``recsys_reloads_total{result}``. Labels are bounded: ``endpoint`` is the route's path
template (``other`` for unknown paths), ``partner`` the caller's partner id, ``admin``, ``open`` or ``none``.
With ``--workers N`` each worker process keeps its own registry (a scrape reads the worker that answers it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["ServiceMetrics", "MetricsMiddleware"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The service's collectors in their own :class:`prometheus_client.CollectorRegistry`."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

        disable_created_metrics()  # no *_created series: one timestamp per label set is noise for a scrape
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("recsys_requests", "HTTP requests answered", ["endpoint", "partner", "status"],
                                registry=r)
        self.latency = Histogram("recsys_request_seconds", "Time to answer a request", ["endpoint", "partner"],
                                 buckets=_BUCKETS, registry=r)
        self.fallbacks = Counter("recsys_fallbacks", "Feeds served by a fallback path", ["partner", "fallback"],
                                 registry=r)
        self.rejected = Counter("recsys_rejected", "Requests refused by the limits (overload: 503, deadline: 504)",
                                ["reason"], registry=r)
        self.model = Gauge("recsys_model_info", "The model version serving (value 1)", ["version", "name"], registry=r)
        self.queue_depth = Gauge("recsys_queue_depth", "Requests waiting for a slot", registry=r)
        self.in_flight = Gauge("recsys_in_flight", "Requests running", registry=r)
        self.reloads = Counter("recsys_reloads", "Model reloads by outcome", ["result"], registry=r)
        self._model_labels: tuple[str, str] | None = None

    def set_model(self, version: str, name: str) -> None:
        """Point ``recsys_model_info`` at the version serving now (the previous series is removed)."""
        labels = (str(version), str(name))
        if labels == self._model_labels:
            return
        if self._model_labels is not None:
            self.model.remove(*self._model_labels)
        self.model.labels(*labels).set(1)
        self._model_labels = labels

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every HTTP request by route template, partner (``scope['state']['partner']``, set by the
    authentication dependency) and status, and times it; ``gauges()`` refreshes the queue gauges."""

    def __init__(self, app: Any, metrics: ServiceMetrics, gauges: Callable[[], tuple[int, int]] | None = None) -> None:
        self.app, self.metrics, self.gauges = app, metrics, gauges

    async def __call__(self, scope: dict, receive: Callable[[], Awaitable[dict]],
                       send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "other"
            partner = str((scope.get("state") or {}).get("partner", "none"))
            self.metrics.requests.labels(endpoint, partner, str(status)).inc()
            self.metrics.latency.labels(endpoint, partner).observe(time.perf_counter() - t0)
            if self.gauges is not None:
                depth, running = self.gauges()
                self.metrics.queue_depth.set(depth)
                self.metrics.in_flight.set(running)
