"""The Ray Tune function trainable: runs `TrialTrainer` and reports each epoch to Tune.

Every epoch is reported with a checkpoint in the project's model-dir format (plus the optimizer
state), so the search's best model is already packaged when the search ends and a restarted
trial (retry after a crash, or a resume) continues from its last epoch exactly.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from steps.hpo.config import TrialParams

# Metrics every report carries besides EpochMetrics: ASHA's time axis and the epochs the trial
# runs (its `num_epochs`, capped by the search's max epochs).
TIME_ATTR = "epoch"
NUM_EPOCHS = "num_epochs"


def trial_threads(cpus_per_trial: float, torch_threads: int | None) -> int:
    """One torch thread per CPU the trial holds (at least 1): no oversubscription when packed."""
    return torch_threads or max(1, math.floor(cpus_per_trial))


def run_trial(
    config: dict[str, Any],
    *,
    data_ref: Any,
    model_path: str,
    max_epochs: int,
    seed: int,
    threads: int,
) -> None:
    import ray
    import torch
    from ray import tune

    from steps.hpo.train import TrialTrainer

    torch.set_num_threads(threads)
    params = TrialParams.model_validate(config)
    num_epochs = min(params.num_epochs or max_epochs, max_epochs)
    # Tune's with_parameters may already resolve the reference; either way it is one shared copy.
    data = ray.get(data_ref) if isinstance(data_ref, ray.ObjectRef) else data_ref

    with tempfile.TemporaryDirectory(prefix="hpo-trial-") as work:
        init_dir = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            init_dir = Path(work) / "restored"
            with checkpoint.as_directory() as ckpt_dir:
                shutil.copytree(ckpt_dir, init_dir)
        trainer = TrialTrainer(data, params, model_path, num_epochs, seed=seed, init_dir=init_dir)
        for metrics in trainer.epochs():
            # Every epoch is checkpointed: a resumed trial continues from its last epoch, not its
            # best (Tune keeps the latest checkpoint besides the best one).
            report = {**metrics.as_dict(), NUM_EPOCHS: num_epochs}
            ckpt_dir = Path(work) / f"epoch-{metrics.epoch}"
            trainer.save(ckpt_dir, metrics.epoch, metrics.as_dict())
            tune.report(report, checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # Tune has persisted it
