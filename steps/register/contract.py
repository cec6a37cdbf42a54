"""The register step's contract: its inputs (= CLI flags = workflow parameters) and its result."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_MODEL_NAME = "emotion-classifier"


class RegisterInput(BaseModel):
    """What to register: one hpo parent run (by id or by Argo workflow uid) and the eval data."""

    model_config = ConfigDict(extra="forbid")

    parent_run_id: str | None = Field(default=None, description="the hpo step's parent run id")
    workflow_uid: str | None = Field(
        default=None, description="instead of parent_run_id: newest parent run tagged argo_workflow_uid=UID"
    )
    dataset_dir: Path = Field(description="dvc-fetch output dir: {test|validation}.parquet + metadata.json")
    model_name: str = Field(
        default=DEFAULT_MODEL_NAME, pattern=r"^[A-Za-z0-9][\w.-]*$", description="registered model name"
    )
    promotion_tolerance: float = Field(
        default=0.005, ge=0.0, le=1.0, description="promote unless worse than the champion by more than this"
    )
    metric: Literal["accuracy", "f1_macro"] = Field("accuracy", description="the gate's metric")
    eval_limit: int = Field(default=0, ge=0, description="evaluate on a fixed sample of N rows; 0 = all")

    @model_validator(mode="after")
    def _one_parent_reference(self) -> RegisterInput:
        if bool(self.parent_run_id) == bool(self.workflow_uid):
            raise ValueError("give exactly one of --parent-run-id or --workflow-uid")
        return self


class RegisterResult(BaseModel):
    model_name: str
    version: int
    model_uri: str
    promoted: bool
    reason: str
    challenger_accuracy: float
    champion_version: int | None
    champion_accuracy: float | None
    metric: str
    eval_split: str
    parent_run_id: str
    source_run_id: str
