"""The deploy step's contract: its inputs (= CLI flags = workflow parameters) and its result."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Target(StrEnum):
    local = "local"
    container = "container"
    kubernetes = "kubernetes"
    ray_serve = "ray-serve"
    rayservice = "rayservice"


class DeployInput(BaseModel):
    """Roll out a model: health-gated rollover (local), or apply + wait + roll back (kubernetes)."""

    model_config = ConfigDict(extra="forbid")

    model_uri: str = Field(
        min_length=1, description="models:/name/N, models:/name@alias, runs:/<id>/model or a model dir"
    )
    deploy_target: Target = Field(
        Target.local,
        description=(
            "local (Gunicorn on this machine), container (the serving image on this machine's "
            "Podman or Docker), kubernetes (a Deployment), ray-serve (a running Ray cluster's Serve) "
            "or rayservice (a KubeRay RayService)"
        ),
    )
    # local target
    host: str = Field("127.0.0.1", description="local, container, ray-serve (its proxy): bind address")
    serving_port: int = Field(
        default=8000,
        ge=1,
        le=65535,
        description="local, container, ray-serve (its proxy, when this deploy starts Serve): listening port",
    )
    workers: int = Field(
        default=0,
        ge=0,
        le=16,
        description=(
            "local: Uvicorn worker processes (0: one per core given to the server, each with one "
            "inference thread: the fastest arrangement measured, docs/benchmarks.md)"
        ),
    )
    ready_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="local, container, ray-serve: how long a new instance may take to pass its gate",
    )
    graceful_timeout_s: int = Field(
        default=30, ge=1, description="local: how long old workers may drain in-flight requests"
    )
    serve_env: dict[str, str] = Field(
        default_factory=dict,
        description="extra environment for the server (SERVE_*, MLFLOW_TRACKING_URI)",
        json_schema_extra={"cli": False},  # taken from the step's own environment, not a flag
    )
    # kubernetes target
    image: str | None = Field(None, description="container, kubernetes: the serving image (with its tag)")
    ray_image: str | None = Field(
        None, description="rayservice: the Ray pods' image, with Ray Serve and serving/ (the train image)"
    )
    deploy_namespace: str = Field("default", min_length=1, description="kubernetes, rayservice: namespace")
    name: str = Field(
        default="emotion-serving",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$",
        description=(
            "kubernetes: Deployment/Service name (container: the rendered Deployment's); "
            "rayservice: the RayService's"
        ),
    )
    replicas: int = Field(
        default=2, ge=1, description="kubernetes: replicas; rayservice: Serve replicas at least"
    )
    secret_name: str = Field(
        "emotion-mlflow-credentials",
        description="kubernetes: Secret with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
    )
    # ray-serve target
    ray_dashboard_url: str = Field(
        default="http://127.0.0.1:8265",
        pattern=r"^https?://",
        description="ray-serve: the cluster's dashboard (Ray Serve's REST deploy API)",
    )
    ray_proxy_location: Literal["HeadOnly", "EveryNode"] = Field(
        default="HeadOnly",
        description="ray-serve: where Serve runs HTTP proxies when this deploy starts Serve",
    )
    rollout_timeout_s: float = Field(
        default=600.0, gt=0, description="kubernetes, rayservice: how long the rollout may take"
    )


class DeployResult(BaseModel):
    deploy_target: Target
    endpoint_url: str
    model_uri: str
    served_version: str
