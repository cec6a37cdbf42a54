"""The deploy step's typed input and result (the result's fields become Argo output parameters)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Target(StrEnum):
    local = "local"
    kubernetes = "kubernetes"


class DeployInput(BaseModel):
    """What to deploy and where. Fields mirror the CLI flags (`--model-uri`, `--ready-timeout-s`, ...)."""

    model_uri: str = Field(min_length=1)
    target: Target = Target.local
    # local target
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=16)
    ready_timeout_s: float = Field(default=300.0, gt=0)
    graceful_timeout_s: int = Field(default=30, ge=1)
    serve_env: dict[str, str] = Field(
        default_factory=dict, description="extra environment for the server (SERVE_*, MLFLOW_TRACKING_URI)"
    )
    # kubernetes target
    image: str | None = None
    namespace: str = "default"
    name: str = Field(default="emotion-serving", pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")
    replicas: int = Field(default=2, ge=1)
    secret_name: str = "emotion-mlflow-credentials"
    rollout_timeout_s: float = Field(default=600.0, gt=0)


class DeployResult(BaseModel):
    target: Target
    endpoint_url: str
    model_uri: str
    served_version: str
