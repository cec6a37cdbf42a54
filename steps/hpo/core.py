"""The hpo step's core: a Ray Tune + ASHA search recorded as MLflow parent/child runs.

Everything that can be wrong with the input (files, search space, model, MLflow, Ray address,
resources) is checked before the first trial starts. The search's state lives in
`storage_dir`: Tune's experiment plus `search.json` (the MLflow parent run id), so `--resume`
after a killed driver continues the same experiment and the same parent run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.errors import StepError, TransientError
from shared.lineage import lineage_tags
from shared.mlflow_contract import (
    BEST_CONFIG_TAG,
    BEST_RUN_TAG,
    BEST_TRIAL_TAG,
    BEST_VAL_ACCURACY,
    BEST_VAL_LOSS,
    MODEL_URI_TAG,
    PARENT_RUN_TAG,
    ROLE_PARENT,
    ROLE_TAG,
    SEARCH_METRIC,
    SEARCH_METRIC_PARAM,
    SEARCH_MODE,
    SEARCH_MODE_PARAM,
    SELECTION_SPLIT,
    SELECTION_SPLIT_PARAM,
    TEMPERATURE_METRIC,
    TOKENIZE_PARAM_PREFIX,
    TRAIN_ROWS_PARAM,
    TUNE_ECE_AFTER,
    TUNE_ECE_BEFORE,
    TUNE_FRACTION_PARAM,
    TUNE_ROWS_PARAM,
    TUNE_SHA256_PARAM,
    WORKFLOW_UID_TAG,
    parent_runs_of_workflow,
)
from shared.mlflow_utils import connect
from shared.model_package import log_model, resolve_model_reference
from shared.progress import NO_PROGRESS, Progress
from shared.ray_cluster import check_ray_address, credentials_hidden_from_ray_tune, resolve_ray_address
from shared.settings import Settings
from steps.hpo.config import load_search_space, space_json, to_tune_space
from steps.hpo.contract import HpoInput, HpoResult
from steps.hpo.data import TokenizedData, load_tokenized
from steps.hpo.scheduler import ResumableASHA, SchedulerStateCallback
from steps.hpo.storage import SearchStorage
from steps.hpo.trainable import TIME_ATTR, run_trial, trial_threads

log = logging.getLogger(__name__)

STATE_FILE = "search.json"
TUNE_EXPERIMENT_TAG = "tune_experiment"  # where the search's Tune experiment lives
METRIC, MODE = SEARCH_METRIC, SEARCH_MODE


def _check_model(ref: str) -> str:
    from transformers import AutoConfig

    path = resolve_model_reference(ref)
    try:
        AutoConfig.from_pretrained(path)
    except Exception as exc:  # hub ids offline, broken dirs: many exception types
        raise StepError(f"model {ref!r} cannot be loaded ({path}): {exc.__class__.__name__}: {exc}") from None
    return path


def _start_ray(inp: HpoInput) -> str | None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    try:
        context = ray.init(
            address=inp.ray_address or "local",  # never attach to a stray cluster by accident
            num_cpus=None if inp.ray_address else inp.ray_num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.WARNING,
        )
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError depending on the address
        if not inp.ray_address and "timed out during startup" in str(exc):
            # an overloaded machine or node: the same command later is expected to work (exit 75)
            raise TransientError(f"the local Ray did not start in time: {exc}") from None
        raise StepError(
            f"cannot start or join Ray (address {inp.ray_address or 'local'}): {type(exc).__name__}: {exc}"
        ) from None
    resources = ray.cluster_resources()
    for key, wanted in (("CPU", inp.cpus_per_trial), ("GPU", inp.gpus_per_trial)):
        have = float(resources.get(key, 0))
        if wanted > have:
            ray.shutdown()
            raise StepError(
                f"--{key.lower()}s-per-trial {wanted:g} exceeds the Ray cluster's {have:g} {key}(s)"
            )
    return getattr(context, "dashboard_url", None)  # None or "" when the dashboard does not run


def _trainable(inp: HpoInput, data_ref: Any, model_path: str, trial_fn: Callable[..., None]):
    from ray import tune

    fn = tune.with_parameters(
        trial_fn,
        data_ref=data_ref,
        model_path=model_path,
        max_epochs=inp.max_epochs,
        seed=inp.seed,
        threads=trial_threads(inp.cpus_per_trial, inp.torch_threads),
    )
    return tune.with_resources(fn, {"cpu": inp.cpus_per_trial, "gpu": inp.gpus_per_trial})


def _new_tuner(inp: HpoInput, space: dict, trainable, name: str, callbacks: list, storage: SearchStorage):
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if inp.search_alg == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search_alg = OptunaSearch(seed=inp.seed)
    else:
        search_alg = BasicVariantGenerator(random_state=inp.seed)
    scheduler = ResumableASHA(
        metric=METRIC,
        mode=MODE,
        time_attr=TIME_ATTR,
        max_t=inp.max_epochs,
        grace_period=min(inp.asha_grace_period, inp.max_epochs),
        reduction_factor=inp.asha_reduction_factor,
    )
    callbacks = [*callbacks, SchedulerStateCallback(scheduler)]  # ASHA's rungs saved with the trials
    return tune.Tuner(
        trainable,
        param_space=to_tune_space(space),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, scheduler=scheduler, search_alg=search_alg, num_samples=inp.num_samples
        ),
        run_config=tune.RunConfig(
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            name=name,
            verbose=1,
            callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=inp.max_failures),
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=METRIC, checkpoint_score_order=MODE
            ),
        ),
    )


def _best_checkpoint(results) -> tuple[Any, Any, dict[str, Any]]:
    """(result, checkpoint, metrics at that checkpoint) with the lowest val_loss of the search."""
    best = None
    for result in results:
        for checkpoint, metrics in result.best_checkpoints or []:
            loss = metrics.get(METRIC)
            if loss is not None and math.isfinite(loss) and (best is None or loss < best[2][METRIC]):
                best = (result, checkpoint, metrics)
    if best is None:
        errors = [str(r.error).splitlines()[0] for r in results if r.error][:3]
        raise StepError(f"no trial produced a checkpoint (all failed?): {'; '.join(errors) or 'no results'}")
    return best


def _log_best_model(client, run_id: str, checkpoint, data: TokenizedData, config: dict[str, Any]):
    """Calibrate the best checkpoint on the tune split (`temperature.json`), then log it as the
    `model` of its child run, keeping the run's status and end time; returns the temperature fit."""
    import mlflow

    from steps.hpo.calibrate import calibrate_model_dir
    from steps.hpo.train import MODEL_DIR_EXCLUDES

    info = client.get_run(run_id).info
    with tempfile.TemporaryDirectory(prefix="hpo-best-") as tmp, checkpoint.as_directory() as ckpt:
        model_dir = Path(tmp) / "model_dir"
        shutil.copytree(ckpt, model_dir, ignore=shutil.ignore_patterns(*MODEL_DIR_EXCLUDES))
        fit = calibrate_model_dir(model_dir, data, max_length=config.get("max_length"))
        mlflow.start_run(run_id=run_id)
        try:
            log_model(model_dir)
        finally:
            mlflow.end_run(status=info.status)
            if info.end_time:  # the trial ended when it ended, not when its model was logged
                client.set_terminated(run_id, status=info.status, end_time=info.end_time)
    return fit


def _tune_lineage(tokenized_dir: Path) -> dict[str, Any]:
    """What the tokenize manifest says about the tune split (fraction, file hash) and the inputs that
    made the tokenized data, for the parent run."""
    from steps.tokenize.core import manifest_inputs

    path = Path(tokenized_dir) / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    out: dict[str, Any] = {f"{TOKENIZE_PARAM_PREFIX}{k}": v for k, v in manifest_inputs(manifest).items()}
    if "fraction" in (manifest.get("tune") or {}):
        out[TUNE_FRACTION_PARAM] = manifest["tune"]["fraction"]
    sha = (manifest.get("outputs_sha256") or {}).get(SELECTION_SPLIT)
    if sha:
        out[TUNE_SHA256_PARAM] = sha
    return out


def _plot_trials(client, parent_run_id: str, results, space: dict) -> None:
    from steps.hpo.plot import parallel_coordinates

    dims = [k for k, v in space.items() if v["distribution"] != "constant"]
    log_dims = {k for k, v in space.items() if "log" in v["distribution"]}
    rows = []
    for r in results:
        metrics = r.metrics or {}
        rows.append({**(r.config or {}), "val_accuracy": metrics.get("val_accuracy")})
    with tempfile.TemporaryDirectory(prefix="hpo-plot-") as tmp:
        png = parallel_coordinates(rows, dims, log_dims, Path(tmp) / "parallel_coordinates.png")
        if png is not None:
            client.log_artifact(parent_run_id, str(png), "plots")


def _load_and_connect(inp: HpoInput, settings: Settings) -> tuple[TokenizedData, str]:
    """The tokenized data (validated) and the MLflow experiment id."""
    data = load_tokenized(inp.tokenized_dir, inp.limit, inp.seed)
    return data, connect(settings)


def run_search(
    inp: HpoInput,
    settings: Settings,
    *,
    trial_fn: Callable[..., None] = run_trial,
    progress: Progress = NO_PROGRESS,
) -> HpoResult:
    """Run (or continue) a search; returns the best trial's run and metrics.

    `trial_fn` is the function each trial runs (tests wrap it to inject crashes); `progress`
    gets trial epochs done out of the search's maximum, a status line and the URLs to watch.
    """
    ray_address = resolve_ray_address(inp.ray_address)
    if ray_address:
        check_ray_address(ray_address)  # ray.init would otherwise retry for minutes
    space = load_search_space(inp.search_space)
    model_path = _check_model(inp.model)
    # Ray's start (seconds, mostly its own processes booting) overlaps reading the data and
    # opening MLflow; both still happen, and fail, before any trial starts.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hpo-prepare") as pool:
        prepared = pool.submit(_load_and_connect, inp, settings)
        try:
            dashboard_url = _start_ray(inp)
        except StepError:
            prepared.result()  # a bad input is the clearer error when both fail
            raise
    import mlflow
    import ray
    from mlflow.tracking import MlflowClient
    from ray import tune

    from steps.hpo.progress import ProgressCallback, attach_driver_progress, report_links
    from steps.hpo.tracking import FAILED, FINISHED, KILLED, RUNNING, MlflowTrialCallback, create_parent_run

    try:
        data, experiment_id = prepared.result()
        tracking_uri = mlflow.get_tracking_uri()
        client = MlflowClient(tracking_uri)
        storage = SearchStorage.open(inp.storage_dir, settings)
        tags = lineage_tags(
            settings,
            dataset_hash=inp.dataset_hash,
            registry_url=inp.registry_url,
            data_version=inp.data_version,
        )
        if inp.workflow_uid:
            tags[WORKFLOW_UID_TAG] = inp.workflow_uid
        name, parent = (
            _existing_search(client, experiment_id, storage, inp) if inp.continues else (None, None)
        )
        if parent is not None and parent.info.status == FINISHED and MODEL_URI_TAG in parent.data.tags:
            log.info("the search %s already finished (parent run %s): its result", name, parent.info.run_id)
            return _result_of_run(parent, experiment_id)
        restoring = name is not None and storage.can_restore(name)
        if parent is not None and not restoring:  # died before Tune saved anything: same parent run
            log.warning("no restorable search %s in %s; starting it again", name, storage.uri)
        elif inp.resume and parent is None:
            log.warning("--resume: no search to continue in %s; starting a new one", storage.uri)
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")  # save experiment state often: resumable
        os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")  # expected
        # Stage no more trials than can run at once, so the scheduler's choice (oldest first) is
        # the one that starts: the same order of trials with or without a resume.
        os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(_concurrent_trials(inp)))
        data_ref = ray.put(data)  # once for all trials; they map it zero-copy
        trainable = _trainable(inp, data_ref, model_path, trial_fn)
        if parent is not None:
            parent_run_id = parent.info.run_id
            client.update_run(parent_run_id, status=RUNNING)  # reopened: it is running again
            client.set_tag(parent_run_id, "resumed_at", datetime.now(UTC).isoformat(timespec="seconds"))
        else:
            params = {
                "num_samples": inp.num_samples,
                "max_epochs": inp.max_epochs,
                "search_alg": inp.search_alg,
                "scheduler": "asha",
                SEARCH_METRIC_PARAM: METRIC,
                SEARCH_MODE_PARAM: MODE,
                "asha_grace_period": min(inp.asha_grace_period, inp.max_epochs),
                "asha_reduction_factor": inp.asha_reduction_factor,
                "max_failures": inp.max_failures,
                "cpus_per_trial": inp.cpus_per_trial,
                "gpus_per_trial": inp.gpus_per_trial,
                "torch_threads": trial_threads(inp.cpus_per_trial, inp.torch_threads),
                "limit": inp.limit,
                SELECTION_SPLIT_PARAM: SELECTION_SPLIT,
                TRAIN_ROWS_PARAM: len(data.train),
                TUNE_ROWS_PARAM: len(data.tune),
                **_tune_lineage(inp.tokenized_dir),
                "seed": inp.seed,
                "model": inp.model,
                "search_space": space_json(space),
            }
            run_name = f"hpo-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
            name = name or inp.workflow_uid or run_name
            parent_run_id = create_parent_run(client, experiment_id, run_name, tags, params)
            client.set_tag(parent_run_id, TUNE_EXPERIMENT_TAG, storage.experiment_uri(name))
            if not inp.workflow_uid:  # a workflow's search is found by its uid; a CLI one by this file
                storage.write_text(
                    STATE_FILE,
                    json.dumps(
                        {"name": name, "parent_run_id": parent_run_id, "experiment_id": experiment_id}
                    ),
                )
        report_links(progress, tracking_uri, experiment_id, parent_run_id, dashboard_url)
        attach_driver_progress(progress)  # a restored search's progress callback reports here
        try:
            with _sigterm_raises():
                if restoring:
                    log.info(
                        "resuming search %s (parent run %s)", storage.experiment_uri(name), parent_run_id
                    )
                    tuner = tune.Tuner.restore(
                        storage.join(name),
                        trainable,
                        resume_errored=True,
                        storage_filesystem=storage.filesystem,
                    )
                else:
                    callback = MlflowTrialCallback(
                        tracking_uri, experiment_id, parent_run_id, inp.max_epochs, tags
                    )
                    watch = ProgressCallback(progress, inp.num_samples, inp.max_epochs)
                    tuner = _new_tuner(inp, space, trainable, name, [callback, watch], storage)
                with credentials_hidden_from_ray_tune():  # Tune copies AWS_* into logged runtime envs
                    results = tuner.fit()
                if not search_complete(results, inp.num_samples):
                    # Tune's Ctrl-C handler ends fit() early, saves the experiment, then stops the
                    # trials still running or waiting (they look terminated): an interruption
                    raise KeyboardInterrupt(
                        f"search interrupted; continue it with the same --workflow-uid"
                        f" or --resume ({storage.experiment_uri(name)})"
                    )
                results = list(results)
                result = _finish(
                    client, experiment_id, parent_run_id, results, space, tracking_uri, inp, tags, data
                )
                progress.finish()
                return result
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated): a rerun continues the search
            close_open_runs(client, experiment_id, parent_run_id, KILLED)
            raise
        except BaseException:
            close_open_runs(client, experiment_id, parent_run_id, FAILED)
            raise
    finally:
        ray.shutdown()


def search_complete(results, num_samples: int) -> bool:
    """Whether every trial of the search ended by itself: ran its epochs or was stopped by ASHA
    (both mark the last result `done`), or failed for good. A trial Tune stopped because the
    search was interrupted, or one that never started, did not."""
    ended = [r for r in results if r.error is not None or (r.metrics or {}).get("done")]
    return len(ended) >= num_samples


def _concurrent_trials(inp: HpoInput) -> int:
    """How many trials the Ray cluster can run at once."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, math.floor(cpus / inp.cpus_per_trial))


class Terminated(KeyboardInterrupt):
    """SIGTERM (a pod evicted or deleted, the local runner stopping): handled like Ctrl-C."""


@contextmanager
def _sigterm_raises():
    """Turn SIGTERM into `Terminated` in the main thread, so the runs are closed before exiting."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated(f"terminated by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _existing_search(client, experiment_id: str, storage: SearchStorage, inp: HpoInput):
    """(Tune experiment name, MLflow parent run) of the search to continue; (name, None) if none yet.

    A workflow's search is named by its uid and its parent run is the newest hpo parent run tagged
    with the uid; a CLI `--resume` reads `search.json` in the storage root.
    """
    if inp.workflow_uid:
        runs = parent_runs_of_workflow(client, [experiment_id], inp.workflow_uid)
        runs = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_PARENT]
        return inp.workflow_uid, (runs[0] if runs else None)
    text = storage.read_text(STATE_FILE)
    if text is None:
        return None, None
    state = json.loads(text)
    return state["name"], client.get_run(state["parent_run_id"])


def close_open_runs(client, experiment_id: str, parent_run_id: str, status: str) -> None:
    """Set the parent run and every child run still RUNNING to `status` (KILLED or FAILED).

    Best effort: the step is already failing or being stopped, and the reason it is matters more
    than a second error from MLflow.
    """
    from steps.hpo.tracking import RUNNING

    try:
        children = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{PARENT_RUN_TAG}` = '{parent_run_id}' and attributes.status = '{RUNNING}'",
            max_results=5000,
        )
        for run in children:
            client.set_terminated(run.info.run_id, status=status)
        client.set_terminated(parent_run_id, status=status)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not mark the search's runs %s: %s", status, exc)


def _finish(client, experiment_id, parent_run_id, results, space, tracking_uri, inp, tags, data) -> HpoResult:
    """Close any child run left open (e.g. the driver died before its callback), log the best."""
    from steps.hpo.tracking import KILLED, RUNNING, MlflowTrialCallback

    tracker = MlflowTrialCallback(tracking_uri, experiment_id, parent_run_id, inp.max_epochs, tags)
    children = tracker.existing_children()
    for r in results:
        trial_id = _trial_id(r)
        if trial_id is None:
            log.warning("cannot tell the trial id of %s; its child run is left as it is", r.path)
            continue
        run_id = children.get(trial_id)
        if run_id is None or client.get_run(run_id).info.status == RUNNING:
            status = tracker.close(trial_id, Path(r.path).name, r.config or {}, r.metrics, _error(r))
            log.info("reconciled trial %s: %s", trial_id, status)
    known = {_trial_id(r) for r in results}
    for trial_id, run_id in tracker.existing_children().items():
        if trial_id not in known and client.get_run(run_id).info.status == RUNNING:
            # a trial of an attempt that died before Tune saved it: it is not part of this search
            client.set_tag(run_id, "abandoned", "the step was retried before this trial was saved")
            client.set_terminated(run_id, status=KILLED)

    best, checkpoint, metrics = _best_checkpoint(results)
    best_trial_id = best.metrics.get("trial_id")
    best_run_id = tracker.existing_children()[best_trial_id]
    best_config = dict(best.config or {})
    fit = _log_best_model(client, best_run_id, checkpoint, data, best_config)
    _plot_trials(client, parent_run_id, results, space)
    calibration = [
        _metric(TEMPERATURE_METRIC, fit.temperature),
        _metric(TUNE_ECE_BEFORE, fit.ece_before),
        _metric(TUNE_ECE_AFTER, fit.ece_after),
    ]
    client.log_batch(best_run_id, metrics=calibration)
    model_uri = f"runs:/{best_run_id}/model"
    client.log_batch(
        parent_run_id,
        metrics=[
            _metric(BEST_VAL_LOSS, metrics[METRIC]),
            _metric(BEST_VAL_ACCURACY, metrics["val_accuracy"]),
            _metric("failed_trials", sum(1 for r in results if r.error)),
            *calibration,
        ],
    )
    for key, value in {
        BEST_TRIAL_TAG: best_trial_id,
        BEST_RUN_TAG: best_run_id,
        BEST_CONFIG_TAG: json.dumps(best_config, sort_keys=True),
        MODEL_URI_TAG: model_uri,
    }.items():
        client.set_tag(parent_run_id, key, value)
    client.set_terminated(parent_run_id, status="FINISHED")
    return HpoResult(
        parent_run_id=parent_run_id,
        best_run_id=best_run_id,
        best_trial_id=best_trial_id,
        best_val_loss=float(metrics[METRIC]),
        best_val_accuracy=float(metrics["val_accuracy"]),
        best_config=best_config,
        experiment_id=experiment_id,
        model_uri=model_uri,
    )


def _trial_id(result) -> str | None:
    """Tune's trial id of a result: from its metrics, else from its directory name."""
    if result.metrics and result.metrics.get("trial_id"):
        return str(result.metrics["trial_id"])
    match = re.search(r"_([0-9a-f]{5}_\d{5})_", Path(result.path).name)
    return match.group(1) if match else None


def _error(result) -> str | None:
    return None if result.error is None else f"{result.error.__class__.__name__}: {result.error}"


def _metric(key: str, value: float):
    import time

    from mlflow.entities import Metric

    return Metric(key, float(value), int(time.time() * 1000), 0)


def find_result(workflow_uid: str, settings: Settings) -> HpoResult:
    """The result of the newest finished search whose parent run carries `workflow_uid`."""
    from mlflow.tracking import MlflowClient

    experiment_id = connect(settings)
    client = MlflowClient()
    runs = parent_runs_of_workflow(client, [experiment_id], workflow_uid, status="FINISHED")
    runs = [r for r in runs if r.data.tags.get(ROLE_TAG) == ROLE_PARENT]
    if not runs:
        raise StepError(f"no finished hpo parent run tagged {WORKFLOW_UID_TAG}={workflow_uid!r}")
    return _result_of_run(runs[0], experiment_id)


def _result_of_run(run, experiment_id: str) -> HpoResult:
    """The result a finished search recorded on its parent run."""
    tags, metrics = run.data.tags, run.data.metrics
    missing = [k for k in (BEST_RUN_TAG, BEST_TRIAL_TAG, BEST_CONFIG_TAG, MODEL_URI_TAG) if k not in tags]
    if missing:
        raise StepError(f"parent run {run.info.run_id} lacks tag(s) {', '.join(missing)}")
    return HpoResult(
        parent_run_id=run.info.run_id,
        best_run_id=tags[BEST_RUN_TAG],
        best_trial_id=tags[BEST_TRIAL_TAG],
        best_val_loss=metrics[BEST_VAL_LOSS],
        best_val_accuracy=metrics[BEST_VAL_ACCURACY],
        best_config=json.loads(tags[BEST_CONFIG_TAG]),
        experiment_id=experiment_id,
        model_uri=tags[MODEL_URI_TAG],
    )
