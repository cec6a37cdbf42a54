"""Reproduce one trial from its MLflow child run alone and report the difference per epoch.

The child run holds the trial's hyperparameters and the lineage tags (data version, data
registry, dataset hash); its parent run the search's seed, row limit, max epochs, torch threads,
base model, the tokenize step's inputs and the tune split's hash. Without `--tokenized-dir` the
data is rebuilt from those records the pipeline's way: the dvc-fetch step's `fetch` of that
version from that registry, then the tokenize step's `tokenize` with the recorded inputs, into a
cache folder keyed by the tune split's hash (reused by the next reproduce of the same search).
The rebuilt (or given) tune split must have the recorded sha256. On CPU with the same thread
count and library versions the metrics are equal.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import StepError, TransientError
from shared.mlflow_contract import (
    DATA_VERSION_TAG,
    DATASET_HASH_TAG,
    REGISTRY_URL_TAG,
    ROLE_TAG,
    ROLE_TRIAL,
    SELECTION_SPLIT,
    TOKENIZE_PARAM_PREFIX,
    TUNE_SHA256_PARAM,
)
from shared.mlflow_utils import connect
from shared.model_package import resolve_model_reference
from shared.settings import Settings

log = logging.getLogger(__name__)

COMPARED = ("train_loss", "val_loss", "val_accuracy", "val_f1_macro")
CACHE_SUBDIR = Path("cache") / "reproduce"  # under the local state folder: <local dir>/cache/reproduce


class ReproduceInput(BaseModel):
    """Train one trial again from its MLflow child run and compare its per-epoch metrics."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1, description="the trial's MLflow child run")
    tokenized_dir: Path | None = Field(
        None,
        description="the tokenize step output the search read, its hash checked (default: fetch and"
        " tokenize the data version the run records, from the data registry it names)",
    )
    model: str | None = Field(None, description="base model (default: the one the search recorded)")


class ReproduceResult(BaseModel):
    run_id: str
    tokenized_dir: str = Field(description="the data trained on: the one given, or the one rebuilt")
    epochs: int
    max_abs_diff: float
    matches: bool
    per_epoch: list[dict[str, float]]


def _check_tune_split(tokenized_dir: Path, recorded: str | None) -> None:
    """The tune split's file must have the sha256 the search recorded (when it recorded one)."""
    from shared.data_registry.hashing import file_sha256

    path = Path(tokenized_dir) / f"{SELECTION_SPLIT}.parquet"
    if recorded is None or not path.is_file():
        return  # a missing file is load_tokenized's error, which names it
    sha = file_sha256(path)
    if sha != recorded:
        raise StepError(
            f"{tokenized_dir} is not the data the search read ({SELECTION_SPLIT} sha256 {sha} != {recorded})"
        )


def rebuild_data(run_id: str, tags: dict[str, str], params: dict[str, str], settings: Settings) -> Path:
    """The tokenized data of a search rebuilt from what its runs record: `tags` (lineage: the data
    version, the registry, the dataset hash) and `params` (the parent run's: the tokenize step's
    inputs, the tune split's hash). Cached under the local state folder by the tune split's hash."""
    from shared.data_registry.atomic import atomic_replace_dir, sibling_tmp_dir
    from shared.data_registry.hashing import file_sha256
    from steps.dvc_fetch.contract import FetchInput
    from steps.dvc_fetch.core import fetch
    from steps.tokenize import TokenizeInput, tokenize
    from steps.tokenize.core import RECORDED_INPUTS

    registry_url, data_version = tags.get(REGISTRY_URL_TAG), tags.get(DATA_VERSION_TAG)
    tune_sha = params.get(TUNE_SHA256_PARAM)
    tokenize_inputs = {
        name: params[TOKENIZE_PARAM_PREFIX + name]
        for name in RECORDED_INPUTS
        if TOKENIZE_PARAM_PREFIX + name in params
    }
    missing = [
        f"tag {t}" for t, v in ((REGISTRY_URL_TAG, registry_url), (DATA_VERSION_TAG, data_version)) if not v
    ]
    missing += [f"param {p}" for p in (TUNE_SHA256_PARAM,) if not tune_sha]
    missing += [f"param {TOKENIZE_PARAM_PREFIX}{n}" for n in RECORDED_INPUTS if n not in tokenize_inputs]
    if missing:
        raise StepError(
            f"--run-id {run_id}: its runs do not record {', '.join(missing)}, so its data cannot be "
            "fetched again; pass --tokenized-dir (the tokenize output the search read)"
        )
    cache = Path(settings.local_dir) / CACHE_SUBDIR / tune_sha[:16]
    cached_tune = cache / f"{SELECTION_SPLIT}.parquet"
    if cached_tune.is_file() and file_sha256(cached_tune) == tune_sha:
        log.info("data of %s (%s at %s): cached in %s", run_id, data_version, registry_url, cache)
        return cache
    log.info(
        "data of %s: fetching %s from %s and tokenizing it into %s", run_id, data_version, registry_url, cache
    )
    with sibling_tmp_dir(cache) as tmp:
        try:
            fetched = fetch(
                FetchInput(registry_url=registry_url, data_version=data_version, output_dir=tmp / "dataset")
            )
        except (StepError, TransientError) as exc:  # the same exit code, said of the recorded tags
            raise type(exc)(
                f"--run-id {run_id}: cannot fetch the data it records (tags {DATA_VERSION_TAG}, "
                f"{REGISTRY_URL_TAG}), or pass --tokenized-dir: {exc}"
            ) from None
        recorded_hash = tags.get(DATASET_HASH_TAG)
        if recorded_hash and fetched.dataset_hash != recorded_hash:
            raise StepError(
                f"{data_version} in {registry_url} is now dataset {fetched.dataset_hash}, not the "
                f"{recorded_hash} the search read (tag {DATASET_HASH_TAG} of {run_id})"
            )
        tokenize(TokenizeInput(dataset_dir=tmp / "dataset", output_dir=tmp / "tokenized", **tokenize_inputs))
        _check_tune_split(tmp / "tokenized", tune_sha)
        atomic_replace_dir(tmp / "tokenized", cache)
    return cache


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
    parent = client.get_run(child.data.tags[MLFLOW_PARENT_RUN_ID]).data
    search = parent.params
    if inp.tokenized_dir is None:
        lineage = {**parent.tags, **{k: v for k, v in child.data.tags.items() if v}}
        tokenized_dir = rebuild_data(inp.run_id, lineage, search, settings)
    else:
        tokenized_dir = inp.tokenized_dir
    _check_tune_split(tokenized_dir, search.get(TUNE_SHA256_PARAM))
    params = TrialParams.model_validate(child.data.params)
    max_epochs, seed = int(search["max_epochs"]), int(search["seed"])
    recorded = {
        key: {m.step: m.value for m in client.get_metric_history(inp.run_id, key)} for key in COMPARED
    }
    epochs = max(recorded["val_loss"], default=0)
    if not epochs:
        raise StepError(f"--run-id {inp.run_id} recorded no epoch to reproduce")
    torch.set_num_threads(int(search["torch_threads"]))
    data = load_tokenized(tokenized_dir, int(search["limit"]), seed)
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
        run_id=inp.run_id,
        tokenized_dir=str(tokenized_dir),
        epochs=len(rows),
        max_abs_diff=worst,
        matches=worst <= 1e-6,
        per_epoch=rows,
    )
