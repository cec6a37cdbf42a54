"""Prometheus metrics of one app instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128)


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
        self.model_info = Gauge(
            "serving_model_info",
            "The model being served (value 1)",
            ["model_uri", "model_version", "run_id", "backend"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "serving_model_ready", "1 when the model is loaded and warmed up", registry=self.registry
        )

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.texts.inc(size)

    def set_model(self, model_uri: str, model_version: str, run_id: str | None, backend: str) -> None:
        self.model_info.clear()
        self.model_info.labels(model_uri, model_version, run_id or "", backend).set(1)
        self.ready.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
