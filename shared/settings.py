"""One settings object for every step, built at the edge (a CLI) and passed down.

It honours the platform's standard environment variables so the same code runs on Argo pods,
in GitHub Actions and on a laptop. Secrets are `SecretStr`: they never print, and
`public_dict()` leaves them out so they cannot land in MLflow params, tags or logs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_LOCAL_DIR = Path(".local")  # local state (registry, MLflow store, searches, server)
SECRET_FIELDS = frozenset({"aws_access_key_id", "aws_secret_access_key"})


class Settings(BaseSettings):
    """Platform settings shared by all steps (env vars, case-insensitive)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description=(
            "tracking server or store; default sqlite:///$EMOTION_LOCAL_DIR/mlflow.db"
            " (artifacts in mlartifacts/ beside it)"
        ),
    )
    mlflow_experiment_name: str = Field(
        default="emotion",
        validation_alias=AliasChoices("MLFLOW_EXPERIMENT_NAME", "mlflow_experiment_name"),
        description="experiment of the searches",
    )
    argo_workflow_uid: str = Field(
        default="local",
        validation_alias=AliasChoices("ARGO_WORKFLOW_UID", "argo_workflow_uid"),
        description="the workflow run (Argo sets it); tagged on every run and model version",
    )
    docker_image_tag: str = Field(
        default="DEV",
        validation_alias=AliasChoices("DOCKER_IMAGE_TAG", "docker_image_tag"),
        description="the image tag the steps run in; tagged on every run and model version",
    )
    mlflow_s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_S3_ENDPOINT_URL", "mlflow_s3_endpoint_url"),
        description="S3 / MinIO endpoint of artifact stores, search storage and DVC remotes",
    )
    aws_access_key_id: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        description="S3 key id (secret: never logged or recorded)",
    )
    aws_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        description="S3 secret key (secret: never logged or recorded)",
    )
    local_dir: Path = Field(
        default=DEFAULT_LOCAL_DIR,
        validation_alias=AliasChoices("EMOTION_LOCAL_DIR", "local_dir"),
        description="local state: data registry, MLflow store, searches, caches, server state",
    )

    def public_dict(self) -> dict[str, str]:
        """Settings safe to log or record: secrets are left out entirely."""
        return {k: str(v) for k, v in self.model_dump().items() if k not in SECRET_FIELDS and v is not None}

    def secret_values(self) -> list[str]:
        """The raw secret strings, so log scrubbers and tests can look for them."""
        return [
            s.get_secret_value()
            for s in (self.aws_access_key_id, self.aws_secret_access_key)
            if s is not None and s.get_secret_value()
        ]
