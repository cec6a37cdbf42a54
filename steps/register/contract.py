"""The register step's contract: its inputs (= CLI flags = workflow parameters) and its result."""

from __future__ import annotations

from pathlib import Path

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
    accuracy_tolerance: float = Field(
        default=0.005,
        ge=0.0,
        le=1.0,
        description="gate: promote only if accuracy is at most this much below the champion's",
    )
    f1_macro_tolerance: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="gate: promote only if macro-F1 is at most this much below the champion's",
    )
    eval_limit: int = Field(default=0, ge=0, description="evaluate on a fixed sample of N rows; 0 = all")

    @property
    def tolerances(self) -> dict[str, float]:
        """The gate's metrics and their tolerances, in the order they are checked."""
        return {"accuracy": self.accuracy_tolerance, "f1_macro": self.f1_macro_tolerance}

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
    challenger_f1_macro: float
    champion_version: int | None
    champion_accuracy: float | None
    champion_f1_macro: float | None
    temperature: float = Field(description="the challenger's calibration temperature (1.0: none)")
    ece_before: float | None = Field(description="challenger's expected calibration error at temperature 1")
    ece_after: float | None = Field(description="challenger's expected calibration error as served")
    eval_split: str
    parent_run_id: str
    source_run_id: str
