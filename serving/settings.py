"""Serving settings: one object, read from `SERVE_*` environment variables at the edge.

Each field below is read from `SERVE_<FIELD>` (e.g. `SERVE_MODEL_URI`, `SERVE_MAX_WAIT_MS`); the
field descriptions are the documentation (`python -c "from serving.settings import ServeSettings as S;
print(S.model_json_schema())"` prints them).

The MLflow tracking store comes from the platform's `MLFLOW_TRACKING_URI` (shared.settings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL_URI = "models:/emotion-classifier@champion"
DEFAULT_BACKEND = "onnx-int8"


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
    max_batch_size: int = Field(default=32, ge=1, description="most texts in one forward pass")
    max_wait_ms: float = Field(
        default=2.0, ge=0, description="how long a batch waits for more requests after the first one"
    )
    max_tokens: int = Field(default=128, ge=8, description="token-level truncation inside the model")
    threads: int = Field(
        default=1,
        ge=0,
        description="intra-op threads of the inference thread, torch or onnxruntime (0: library default)",
    )
    backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default=DEFAULT_BACKEND,
        description=(
            "inference backend: torch (PyTorch, safetensors), onnx (ONNX Runtime, fp32 export) or onnx-int8 "
            "(ONNX Runtime, dynamic int8 quantization). ONNX graphs are exported once per model content "
            "and cached under cache_dir/onnx. Default onnx-int8: on the 2-core CPU box it is ~4x faster "
            "than torch per forward pass, for a validation accuracy change under 1 point "
            "(docs/benchmarks.md, Serving)"
        ),
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("EMOTION_LOCAL_DIR", ".local")) / "cache" / "serving",
        description=(
            "MLflow model downloads (per version and run) and exported ONNX graphs (per model content); "
            "default $EMOTION_LOCAL_DIR/cache/serving"
        ),
    )
    log_level: str = Field(default="info", description="uvicorn and app log level")
