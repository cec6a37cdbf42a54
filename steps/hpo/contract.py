"""The hpo step's contract: its inputs (= CLI flags = workflow parameters) and its result."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.model_package import DEFAULT_MODEL


class HpoInput(BaseModel):
    """Run a Ray Tune + ASHA search over fine-tuning hyperparameters, recorded in MLflow."""

    model_config = ConfigDict(extra="forbid")

    tokenized_dir: Path = Field(
        description="tokenize step output (train/tune parquet; validation is not read)"
    )
    model: str = Field(
        DEFAULT_MODEL, min_length=1, description="base model: directory, model package or hub id"
    )
    num_samples: int = Field(8, ge=1, description="number of hyperparameter trials Ray Tune runs")
    max_epochs: int = Field(3, ge=1, description="maximum epochs per trial (ASHA's max_t)")
    search_alg: Literal["random", "optuna"] = Field(
        "random", description="search algorithm: random or optuna (TPE)"
    )
    search_space: Path | None = Field(None, description="YAML search space (default: the packaged one)")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs reserved for each trial")
    gpus_per_trial: float = Field(0.0, ge=0, description="GPUs per trial; fractions pack trials on a GPU")
    ray_address: str | None = Field(None, description="join this Ray cluster (empty: start Ray locally)")
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs of the local Ray (default: all)")
    seed: int = Field(0, description="seed for sampling, splits and training")
    limit: int = Field(0, ge=0, description="cap on training rows, stratified (0 = all)")
    max_failures: int = Field(1, ge=0, description="retries of a crashed trial")
    storage_dir: str | None = Field(
        None,
        description="Ray Tune experiment storage: a folder or s3://bucket/prefix on the artifact store"
        " (default: $EMOTION_HPO_STORAGE, else <local dir>/hpo)",
    )
    workflow_uid: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the workflow run this search belongs to: its experiment is <storage-dir>/<uid> and"
        " its MLflow parent run carries the uid; a rerun with the same uid continues that search",
    )
    resume: bool = Field(
        False, description="continue the last search in --storage-dir (always done with --workflow-uid)"
    )
    asha_grace_period: int = Field(1, ge=1, description="epochs every trial runs before ASHA may stop it")
    asha_reduction_factor: float = Field(
        2.0, gt=1, description="ASHA keeps the best 1/factor of the trials at each rung"
    )
    torch_threads: int | None = Field(None, ge=1, description="torch threads per trial (default: its CPUs)")
    data_version: str | None = Field(None, description="dataset version (lineage)")
    dataset_hash: str | None = Field(None, description="dataset hash (lineage)")
    registry_url: str | None = Field(None, description="data registry URL (lineage)")

    @field_validator("ray_address", "workflow_uid")
    @classmethod
    def _blank_is_local(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("storage_dir", mode="before")
    @classmethod
    def _path_or_url(cls, value: object) -> object:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        return value or None

    @property
    def continues(self) -> bool:
        """Whether an existing search is continued: with --resume, and always for a workflow uid."""
        return self.resume or self.workflow_uid is not None


class HpoResultQuery(BaseModel):
    """Write the result of the newest finished search tagged with a workflow uid (RayJob runs)."""

    model_config = ConfigDict(extra="forbid")

    workflow_uid: str = Field(
        min_length=1, description="the Argo workflow uid the search's parent run carries"
    )


class HpoResult(BaseModel):
    parent_run_id: str
    best_run_id: str
    best_trial_id: str
    best_val_loss: float
    best_val_accuracy: float
    best_config: dict[str, Any]
    experiment_id: str
    model_uri: str
