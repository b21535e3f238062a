"""Prometheus metrics: requests, latency histograms and errors by kind.

With ``--workers N`` every worker process writes its samples under
``PROMETHEUS_MULTIPROC_DIR`` (``anygram serve`` sets it) and ``/metrics`` adds them up.
"""

from __future__ import annotations

import os
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

# Queries take microseconds to seconds: buckets from 100 µs up.
_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

REQUESTS = Counter("anygram_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "anygram_request_duration_seconds", "Time from request to response, by route", ["route"], buckets=_BUCKETS
)
ENGINE_LATENCY = Histogram(
    "anygram_engine_duration_seconds", "Time in engine calls, by query type", ["query_type"], buckets=_BUCKETS
)
ERRORS = Counter("anygram_errors_total", "Error responses, by code (see anygram_server.errors)", ["code"])


def render() -> tuple:
    """The exposition text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts every HTTP request by its route template (``/v1/indexes/{name}/count``, not the
    concrete path, so label sets stay bounded). Plain ASGI: no per-request task or copy."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], path, str(status[0])).inc()
            LATENCY.labels(path).observe(time.perf_counter() - start)
