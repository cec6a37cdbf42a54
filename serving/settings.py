"""Serving settings: one object, read from `SERVE_*` environment variables at the edge.

Each field below is read from `SERVE_<FIELD>` (e.g. `SERVE_MODEL_URI`, `SERVE_MAX_WAIT_MS`); the
field descriptions are the documentation (`python -c "from serving.settings import ServeSettings as S;
print(S.model_json_schema())"` prints them).

The MLflow tracking store comes from the platform's `MLFLOW_TRACKING_URI` (shared.settings).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings import Settings

DEFAULT_MODEL_URI = "models:/emotion-classifier@champion"
DEFAULT_BACKEND = "onnx-int8-static"


class ServeSettings(BaseSettings):
    """Everything the inference server can be told; built once and passed to `create_app`."""

    model_config = SettingsConfigDict(
        env_prefix="SERVE_", extra="ignore", case_sensitive=False, protected_namespaces=()
    )

    model_uri: str = Field(
        default=DEFAULT_MODEL_URI,
        description="models:/<name>@<alias>, models:/<name>/<version>, runs:/<run_id>/<path> or a model dir",
    )
    host: str = Field(default="127.0.0.1", description="bind address (0.0.0.0 only inside a container)")
    port: int = Field(default=8000, ge=0, le=65535, description="bind port")
    max_texts: int = Field(default=64, ge=1, description="most texts in one request (more: 422)")
    max_text_chars: int = Field(default=2000, ge=1, description="longest text, in characters")
    overlong: Literal["reject", "truncate"] = Field(
        default="reject", description="over-long text: reject (422) or truncate (flagged truncated: true)"
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=64, description="larger request bodies get 413 before any parsing"
    )
    max_batch_size: int = Field(
        default=16,
        ge=1,
        description="most texts in one forward pass (16: as cheap per text as 32 here, half the wait)",
    )
    max_wait_ms: float = Field(
        default=2.0, ge=0, description="how long a batch waits for more requests after the first one"
    )
    max_tokens: int = Field(default=128, ge=8, description="token-level truncation inside the model")
    threads: int = Field(
        default=1,
        ge=0,
        description="intra-op threads of the inference thread, torch or onnxruntime (0: library default)",
    )
    backend: Literal["torch", "onnx", "onnx-int8-static", "onnx-int8"] = Field(
        default=DEFAULT_BACKEND,
        description=(
            "inference backend: torch (PyTorch, safetensors), onnx (ONNX Runtime, fp32), onnx-int8-static "
            "(int8, activation scales calibrated on training texts: a text's scores do not depend on its "
            "batch-mates) or onnx-int8 (dynamic int8: batch-dependent scores). The ONNX graph comes from "
            "the model version's serving artifact (built and evaluated by register) or, for models "
            "registered without one, is exported at start-up and cached under cache_dir/onnx"
        ),
    )
    calibration_texts: Path | None = Field(
        default=None,
        description=(
            "start-up export of onnx-int8-static for a model without a serving artifact: a parquet file "
            "(column `text`) or a text file (one per line) to calibrate on; without it such a model is "
            "served with the exact fp32 onnx graph instead"
        ),
    )
    max_queued_texts: int = Field(
        default=64,
        ge=0,
        description=(
            "admission bound per worker: texts waiting for a batch; a request past it gets 503 + "
            "Retry-After at once (0: unbounded)"
        ),
    )
    deadline_ms: float = Field(
        default=500.0,
        ge=0,
        description=(
            "every request's deadline, counted from its arrival on the connection: a request is "
            "admitted only if the work ahead of it plus its own, at the measured pace, ends within 80% "
            "of it (else 503 + Retry-After at once), and a queued one its batch would answer after it "
            "gets 503 before anything is computed (0: none)"
        ),
    )
    loop_niceness: int = Field(
        default=5,
        ge=0,
        le=19,
        description=(
            "how much lower (in nice steps) the event loop's CPU priority is than the inference and "
            "tokenize threads', so a flood of refused requests cannot starve the admitted ones (Linux; "
            "0: same priority)"
        ),
    )
    retry_after_s: int = Field(default=1, ge=0, description="Retry-After seconds on a 503 for overload")
    refused_pause_ms: float = Field(
        default=1000.0,
        ge=0,
        description=(
            "after refusing a request for overload (503 + Retry-After), the server refuses that "
            "connection's next request only this much later (it is read and timed at once, and answered "
            "if the worker admits it), so clients that resend at once without honouring Retry-After "
            "cannot keep the event loop busy refusing (1000: the default Retry-After; 0: no pause)"
        ),
    )
    length_ratio: float = Field(
        default=1.1,
        ge=1.0,
        description=(
            "length-bucketed batching: waiting texts are bucketed by length in steps of this ratio and "
            "a batch is taken from one bucket and its two neighbours (1.1: the natural mix's best "
            "throughput here, docs/benchmarks.md)"
        ),
    )
    cache_dir: Path = Field(
        default_factory=lambda: Settings().local_dir / "cache" / "serving",
        description=(
            "MLflow model downloads (per version and run) and exported ONNX graphs (per model content); "
            "default $EMOTION_LOCAL_DIR/cache/serving"
        ),
    )
    log_level: str = Field(default="info", description="uvicorn and app log level")
    # Ray Serve host (serving.ray_app): the same settings scale it out
    replicas: int = Field(
        default=1, ge=1, description="Ray Serve: replicas (the autoscaling floor when max_replicas is higher)"
    )
    max_replicas: int | None = Field(
        default=None,
        ge=1,
        description="Ray Serve: autoscaling ceiling on ongoing requests (unset: a fixed replica count)",
    )
    cpus_per_replica: float = Field(default=1.0, gt=0, description="Ray Serve: CPUs each replica reserves")
    target_ongoing_requests: float = Field(
        default=16.0,
        gt=0,
        description="Ray Serve: ongoing requests per replica the autoscaler aims at (one batch's worth)",
    )
    max_ongoing_requests: int = Field(
        default=256,
        ge=1,
        description=(
            "Ray Serve: requests one replica holds at once; high, so requests reach the replica's batcher "
            "and admission (503 + Retry-After) instead of waiting unseen in Ray's router"
        ),
    )
    max_queued_requests: int = Field(
        default=-1,
        ge=-1,
        description=(
            "Ray Serve: requests each proxy queues while every replica holds max_ongoing_requests; "
            "beyond it Ray answers 503 + Retry-After at once (-1: no limit)"
        ),
    )

    @field_validator("max_queued_requests")
    @classmethod
    def _queue_bound(cls, value: int) -> int:
        if value == 0:
            raise ValueError("max_queued_requests is -1 (no limit) or at least 1 (Ray Serve's rule)")
        return value

    @model_validator(mode="after")
    def _replica_bounds(self) -> ServeSettings:
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas ({self.replicas})")
        return self
