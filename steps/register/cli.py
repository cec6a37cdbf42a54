"""`python -m steps.register`: parse flags, build settings, call the core, write the result files."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from pydantic import ValidationError

from shared.cli import run_step
from shared.errors import StepError

app = typer.Typer(add_completion=False, help=__doc__)


def _flag(loc: tuple) -> str:
    return "--" + "-".join(str(p) for p in loc).replace("_", "-") + ": " if loc else ""


def _input(**fields):
    from steps.register.core import RegisterInput

    try:
        return RegisterInput(**fields)
    except ValidationError as exc:
        problems = "; ".join(_flag(e["loc"]) + e["msg"] for e in exc.errors())
        raise StepError(f"bad input: {problems}") from None


@app.command()
def main(
    parent_run_id: str = typer.Option(None, help="MLflow run id of the hpo parent run"),
    workflow_uid: str = typer.Option(
        None, help="instead of --parent-run-id: the newest parent run tagged argo_workflow_uid=UID"
    ),
    dataset_dir: Path = typer.Option(..., help="dvc-fetch output (test/validation parquet + metadata.json)"),
    model_name: str = typer.Option("emotion-classifier", help="registered model name"),
    tolerance: float = typer.Option(0.005, help="promote unless worse than the champion by more than this"),
    metric: str = typer.Option("accuracy", help="gate metric: accuracy or f1_macro"),
    eval_limit: int = typer.Option(0, help="evaluate on a fixed random sample of N rows (0 = all)"),
    result_dir: Path = typer.Option(None, help="write result.json and one file per field here"),
) -> None:
    """Register the best trial of an hpo search and move `champion` if it passes the gate."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep pod logs readable

    def core():
        from shared.settings import Settings
        from steps.register.core import register

        inp = _input(
            parent_run_id=parent_run_id,
            workflow_uid=workflow_uid,
            dataset_dir=dataset_dir,
            model_name=model_name,
            tolerance=tolerance,
            metric=metric,
            eval_limit=eval_limit,
        )
        return register(inp, Settings())

    run_step("register", core, result_dir)
