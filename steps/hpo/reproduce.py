"""Reproduce one trial from its MLflow child run alone and report the difference per epoch.

The child run holds the trial's hyperparameters; its parent run the search's seed, row limit,
max epochs, torch threads, base model and the tune split's hash (checked against the tokenized
data given). On CPU with the same thread count and library versions the metrics are equal.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import StepError
from shared.mlflow_contract import ROLE_TAG, ROLE_TRIAL, SELECTION_SPLIT, TUNE_SHA256_PARAM
from shared.mlflow_utils import connect
from shared.model_package import resolve_model_reference
from shared.settings import Settings

log = logging.getLogger(__name__)

COMPARED = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro")


class ReproduceInput(BaseModel):
    """Train one trial again from its MLflow child run and compare its per-epoch metrics."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1, description="the trial's MLflow child run")
    tokenized_dir: Path = Field(description="the tokenize step output the search read (its hash is checked)")
    model: str | None = Field(None, description="base model (default: the one the search recorded)")


class ReproduceResult(BaseModel):
    run_id: str
    epochs: int
    max_abs_diff: float
    matches: bool
    per_epoch: list[dict[str, float]]


def _check_tune_split(tokenized_dir: Path, recorded: str | None) -> None:
    manifest = Path(tokenized_dir) / "manifest.json"
    if recorded is None or not manifest.is_file():
        return
    sha = (json.loads(manifest.read_text()).get("outputs_sha256") or {}).get(SELECTION_SPLIT)
    if sha and sha != recorded:
        raise StepError(
            f"{tokenized_dir} is not the data the search read ({SELECTION_SPLIT} sha256 {sha} != {recorded})"
        )


def reproduce(inp: ReproduceInput, settings: Settings) -> ReproduceResult:
    import torch
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    from steps.hpo.config import TrialParams
    from steps.hpo.data import load_tokenized
    from steps.hpo.train import TrialTrainer

    connect(settings)
    client = MlflowClient()
    try:
        child = client.get_run(inp.run_id)
    except MlflowException as exc:
        raise StepError(f"--run-id {inp.run_id}: no such MLflow run ({exc.error_code})") from None
    if child.data.tags.get(ROLE_TAG) != ROLE_TRIAL:
        raise StepError(f"--run-id {inp.run_id} is not a trial's child run (tag {ROLE_TAG})")
    search = client.get_run(child.data.tags[MLFLOW_PARENT_RUN_ID]).data.params
    _check_tune_split(inp.tokenized_dir, search.get(TUNE_SHA256_PARAM))
    params = TrialParams.model_validate(child.data.params)
    max_epochs, seed = int(search["max_epochs"]), int(search["seed"])
    recorded = {
        key: {m.step: m.value for m in client.get_metric_history(inp.run_id, key)} for key in COMPARED
    }
    epochs = max(recorded["val_loss"], default=0)
    if not epochs:
        raise StepError(f"--run-id {inp.run_id} recorded no epoch to reproduce")
    torch.set_num_threads(int(search["torch_threads"]))
    data = load_tokenized(inp.tokenized_dir, int(search["limit"]), seed)
    model_path = resolve_model_reference(inp.model or search["model"])
    num_epochs = min(params.num_epochs or max_epochs, max_epochs)  # the LR schedule's length
    trainer = TrialTrainer(data, params, model_path, num_epochs, seed=seed)
    rows, worst = [], 0.0
    for metrics in trainer.epochs():
        got = metrics.as_dict()
        row: dict[str, float] = {"epoch": metrics.epoch}
        for key in COMPARED:
            if metrics.epoch in recorded[key]:
                diff = got[key] - recorded[key][metrics.epoch]
                row[key], row[f"{key}_diff"] = got[key], diff
                worst = max(worst, abs(diff))
        rows.append(row)
        log.info(
            "epoch %d: %s",
            metrics.epoch,
            ", ".join(f"{k} {v:+.3g}" for k, v in row.items() if k.endswith("_diff")),
        )
        print(
            f"epoch {metrics.epoch}: "
            + "  ".join(f"{k} {row[k]:.6f} (diff {row[k + '_diff']:+.2e})" for k in COMPARED if k in row),
            flush=True,
        )
        if metrics.epoch >= epochs:
            break
    return ReproduceResult(
        run_id=inp.run_id, epochs=len(rows), max_abs_diff=worst, matches=worst <= 1e-6, per_epoch=rows
    )
