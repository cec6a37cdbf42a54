"""Prometheus metrics of one app instance, correct across Gunicorn workers.

Single process (`python -m serving`, tests): each app has its own registry, so several apps can
live in one process. Under Gunicorn the deploy step sets `PROMETHEUS_MULTIPROC_DIR` (prometheus
client's multiprocess mode): every worker writes its samples to files there and `/metrics`, on
whichever worker answers, aggregates all of them (counters and histograms summed over workers,
live ones and exited ones alike; the queue-depth gauge summed over live workers; model gauges the
max), so the numbers do not depend on which worker the scrape lands on.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from shared.environment import PlatformEnvironment

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus_client runs in multiprocess mode, else None."""
    return PlatformEnvironment().prometheus_multiproc_dir or None  # either case, as prometheus_client


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "serving_requests",
            "HTTP requests by endpoint, method and status code",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "serving_request_duration_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "serving_batch_size", "Texts per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.batch_seconds = Histogram(
            "serving_batch_inference_seconds",
            "Time of one batched forward pass (tokenize + model)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.texts = Counter("serving_predicted_texts", "Texts classified", registry=self.registry)
        self.shed = Counter(
            "serving_shed_requests",
            "Requests answered 503 for overload: queue_full (refused on arrival) or deadline (waited)",
            ["reason"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "serving_queue_depth",
            "Texts waiting for a batch (summed over live workers)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.model_info = Gauge(
            "serving_model_info",
            "The model being served (value 1)",
            ["model_uri", "model_version", "run_id", "backend"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.ready = Gauge(
            "serving_model_ready",
            "1 when the model is loaded and warmed up (in any live worker)",
            registry=self.registry,
            multiprocess_mode="livemax",
        )

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.texts.inc(size)

    def observe_shed(self, reason: str) -> None:
        self.shed.labels(reason).inc()

    def set_model(self, model_uri: str, model_version: str, run_id: str | None, backend: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model_uri, model_version, run_id or "", backend).set(1)
        self.ready.set(1)

    def render(self) -> bytes:
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)
