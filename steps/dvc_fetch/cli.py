"""CLI of the dvc-fetch step.

    python -m steps.dvc_fetch --registry-url .local/data-registry --rev emotion-v1.0.0 \\
        --output-dir out/dataset --result-dir out/result

`--rev` defaults to $DVC_DATA_VERSION (emotion-v1.0.0): running on another dataset version
means changing that one parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import run_step
from shared.data_registry import DEFAULT_PATH, REQUIRED_SPLITS
from shared.settings import Settings

app = typer.Typer(add_completion=False, help=__doc__)
Opt = typer.Option


@app.command()
def main(
    registry_url: Annotated[str, Opt(help="the data registry: a local path or a git URL")],
    output_dir: Annotated[Path, Opt(help="where the split files and metadata.json go")],
    rev: Annotated[
        str | None, Opt(help="dataset version tag, branch or commit (default: $DVC_DATA_VERSION)")
    ] = None,
    path: Annotated[str, Opt(help="the dataset's path inside the registry")] = DEFAULT_PATH,
    required_split: Annotated[list[str] | None, Opt(help="a split that must be present (repeatable)")] = None,
    remote: Annotated[str | None, Opt(help="DVC remote name (default: the registry's default)")] = None,
    jobs: Annotated[int | None, Opt(help="parallel downloads")] = None,
    result_dir: Annotated[Path | None, Opt(help="write result.json and one file per field here")] = None,
) -> None:
    """Fetch one dataset version from the DVC data registry, verified and schema-checked."""
    from steps.dvc_fetch.core import FetchInput, fetch

    settings = Settings()
    inp = FetchInput(
        registry_url=registry_url,
        rev=rev or settings.dvc_data_version,
        path=path,
        output_dir=output_dir,
        required_splits=required_split or list(REQUIRED_SPLITS),
        remote=remote,
        jobs=jobs,
    )
    run_step("dvc-fetch", lambda: fetch(inp), result_dir)
