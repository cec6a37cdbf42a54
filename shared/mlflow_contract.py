"""The MLflow hand-off between steps: what hpo writes and register, serving and the runner read.

One module, imported by the writer and every reader, so a tag or param name is never retyped.
"""

from __future__ import annotations

import re

from shared.errors import StepError

# Run hierarchy
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own nesting tag, set on child runs
ROLE_TAG = "hpo_role"
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
TRIAL_ID_TAG = "trial_id"  # Ray Tune's trial id, on each child run (no duplicates after a resume)

# Lineage tags (shared.lineage writes them on parent runs, child runs and model versions)
WORKFLOW_UID_TAG = "argo_workflow_uid"
IMAGE_TAG_TAG = "docker_image_tag"
DATA_VERSION_TAG = "dvc_data_version"
DATASET_HASH_TAG = "dataset_hash"
REGISTRY_URL_TAG = "dvc_registry_url"
CODE_VERSION_TAG = "code_version"
LINEAGE_TAGS = (
    WORKFLOW_UID_TAG,
    IMAGE_TAG_TAG,
    DATA_VERSION_TAG,
    DATASET_HASH_TAG,
    REGISTRY_URL_TAG,
    CODE_VERSION_TAG,
)

# What the search optimised: params on the parent run, read by register to rank children.
SEARCH_METRIC_PARAM = "search_metric"
SEARCH_MODE_PARAM = "search_mode"
SEARCH_METRIC = "val_loss"
SEARCH_MODE = "min"
# The split the search ranks trials on (and fits the temperature on). The trial metrics keep
# their `val_` names (val_loss, val_accuracy, val_f1_macro: ASHA's metric, the UI's columns) but
# are computed on this split, carved out of the training rows; `validation` is register's gate.
SELECTION_SPLIT_PARAM = "selection_split"
SELECTION_SPLIT = "tune"
TRAIN_ROWS_PARAM = "train_rows"
TUNE_ROWS_PARAM = "tune_rows"
TUNE_FRACTION_PARAM = "tune_fraction"
TUNE_SHA256_PARAM = "tune_sha256"  # sha256 of the tokenized tune.parquet (lineage of the split)
# The tokenize step's inputs as its manifest records them (steps.tokenize.core.manifest_inputs), one
# param each on the parent run (tokenize_max_length, tokenize_seed, ...): with the data version and
# registry tags they rebuild the search's data (`python -m steps.hpo reproduce`).
TOKENIZE_PARAM_PREFIX = "tokenize_"

# Calibration of the best model (metrics on its child run and on the parent run)
TEMPERATURE_METRIC = "temperature"
TUNE_ECE_BEFORE = "tune_ece_before"
TUNE_ECE_AFTER = "tune_ece_after"

# The search's outcome, as tags and metrics on the parent run
BEST_RUN_TAG = "best_run_id"
BEST_TRIAL_TAG = "best_trial_id"
BEST_CONFIG_TAG = "best_config"
MODEL_URI_TAG = "model_uri"
BEST_VAL_LOSS = "best_val_loss"
BEST_VAL_ACCURACY = "best_val_accuracy"

_SAFE_VALUE = re.compile(r"[\w.:@/+-]+")


def quoted(value: str, what: str) -> str:
    """`value` as a quoted MLflow filter literal; anything outside a safe character set is bad input."""
    if not _SAFE_VALUE.fullmatch(value):
        raise StepError(f"{what} {value!r} has characters outside [A-Za-z0-9_.:@/+-]")
    return f"'{value}'"


def parent_runs_of_workflow(
    client, experiment_ids: list[str], workflow_uid: str, *, status: str | None = None
):
    """The hpo parent runs tagged with `workflow_uid`, newest first (optionally only with `status`)."""
    filters = [
        f"tags.{WORKFLOW_UID_TAG} = {quoted(workflow_uid, 'workflow uid')}",
        f"tags.`{PARENT_RUN_TAG}` IS NULL",
    ]
    if status:
        filters.append(f"attributes.status = {quoted(status, 'run status')}")
    runs = client.search_runs(
        list(experiment_ids),
        filter_string=" and ".join(filters),
        order_by=["attributes.start_time DESC"],
        max_results=50,
    )
    return [r for r in runs if PARENT_RUN_TAG not in r.data.tags]
