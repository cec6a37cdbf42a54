"""The tokenize-to-parquet step's contract: its inputs (= CLI flags = workflow parameters) and result."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.model_package import DEFAULT_MODEL

DEFAULT_MAX_LENGTH = 128


class TokenizeInput(BaseModel):
    """Tokenize a dataset directory into parquet (input_ids, label, length) in bounded memory."""

    model_config = ConfigDict(extra="forbid")

    dataset_dir: Path = Field(description="dvc-fetch output: <split>.parquet + metadata.json")
    output_dir: Path = Field(description="where the tokenized splits, tokenizer and labels.json go")
    model: str = Field(
        DEFAULT_MODEL, min_length=1, description="model package name, local directory or hub id"
    )
    max_length: int = Field(
        DEFAULT_MAX_LENGTH,
        ge=2,
        le=65_536,
        description="truncate to this many tokens (special tokens included)",
    )
    limit: int = Field(0, ge=0, description="cap on training rows, stratified by label (0 = all)")
    eval_limit: int = Field(0, ge=0, description="cap on the rows of every other split, stratified (0 = all)")
    seed: int = Field(0, description="seed of the stratified samples")
    tune_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=0.5,
        description=(
            "share of the training rows carved out as the tune split (model selection and calibration;"
            " never trained on); capped by eval_limit; with a limit it comes from rows beyond the limit"
        ),
    )
    batch_size: int = Field(
        16_384, ge=1, le=1_048_576, description="rows per tokenizer batch and per parquet row group"
    )


class TokenizeResult(BaseModel):
    output_dir: str
    model: str
    max_length: int
    limit: int | None
    eval_limit: int | None
    tune_fraction: float
    rows: dict[str, int] = Field(description="rows per output split (train, tune, validation, ...)")
    tokens: dict[str, int]
    rows_at_max_length: dict[str, int] = Field(description="rows that hit max_length (truncated or exactly)")
    tokenized_hash: str = Field(description="sha256 over every output file: equal hashes, identical outputs")
