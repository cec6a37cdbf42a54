"""The dvc-fetch step's contract: its inputs (= CLI flags = workflow parameters) and its result."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.data_registry.build import DEFAULT_PATH
from shared.data_registry.format import REQUIRED_SPLITS

DEFAULT_DATA_VERSION = "emotion-v1.0.0"


class FetchInput(BaseModel):
    """Fetch one dataset version from the DVC data registry, verified and schema-checked."""

    model_config = ConfigDict(extra="forbid")

    registry_url: str = Field(min_length=1, description="the data registry: a local path or a git URL")
    data_version: str = Field(
        DEFAULT_DATA_VERSION, min_length=1, description="dataset version: a registry tag, branch or commit"
    )
    data_path: str = Field(DEFAULT_PATH, min_length=1, description="the dataset's path inside the registry")
    output_dir: Path = Field(description="where the split files and metadata.json go")
    required_splits: list[str] = Field(
        default_factory=lambda: list(REQUIRED_SPLITS), description="splits that must be present (repeatable)"
    )
    remote: str | None = Field(default=None, description="DVC remote name (default: the registry's default)")
    jobs: int | None = Field(default=None, ge=1, description="parallel downloads (DVC's default when unset)")


class FetchResult(BaseModel):
    registry_url: str
    data_version: str = Field(description="the version as asked for, e.g. emotion-v1.0.0")
    data_path: str
    commit: str = Field(description="the git commit the version resolved to")
    resolved_commit: str = Field(description="the same commit, under the name the cache keys use")
    dataset_hash: str = Field(description="the md5 DVC recorded for the dataset directory (`<md5>.dir`)")
    output_dir: str
    splits: list[str]
    rows: dict[str, int]
    class_counts: dict[str, dict[str, int]]
