"""Named parameter profiles for local runs (`run_local --profile demo`).

A profile overrides the workflow's embedded defaults for one machine; `--param` overrides the
profile. Only parameters the workflow declares are applied, so a profile can serve several
workflows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# A few hundred optimizer steps on CPU need a higher learning rate than the full-data default
# (1e-5..1e-4) to move the packaged MiniLM far from its start. Measured on the 2-core machine
# (2,000 train / 500 validation rows, batch 32): lr 2.5e-4 reached val accuracy 0.71 / 0.83 /
# 0.87 after epochs 1 / 2 / 3, lr 4e-4 with 10% warmup 0.61 / 0.83 / 0.88, lr 6e-4 0.59 / 0.71
# after 2; lr 5e-5..1.3e-4 stayed under 0.6 after one epoch. Batch 16 costs ~40% more per epoch.
# 1,500 rows x 3 epochs reached 0.82, 2,000 x 2 epochs 0.77: more epochs pay most, so the demo
# runs 3 trials of up to 3 epochs (4 trials that ASHA could not cut took 8 minutes of search).
DEMO_SEARCH_SPACE = """\
learning_rate: {distribution: loguniform, low: 1.5e-4, high: 5.0e-4}
batch_size: {distribution: constant, value: 32}
weight_decay: {distribution: uniform, low: 0.0, high: 0.1}
warmup_ratio: {distribution: constant, value: 0.1}
"""


def demo(local_dir: Path) -> dict[str, str]:
    """Small settings that run the whole pipeline on 2 CPU cores in well under 10 minutes."""
    local = Path(local_dir).resolve()
    return {
        "registry-url": str(local / "data-registry"),
        "mlflow-tracking-uri": f"sqlite:///{local / 'mlflow.db'}",
        "deploy-target": "local",
        "hpo-runner": "in-pod",
        "num-samples": "3",
        "max-epochs": "3",
        "limit": "2000",
        "eval-limit": "500",
        "search-space": DEMO_SEARCH_SPACE,
        "cpus-per-trial": "1",
        "gpus-per-trial": "0",
        "image-tag": "DEV",
        "storage-dir": str(local / "hpo"),  # the search's experiment: <local>/hpo/<workflow uid>
    }


PROFILES: dict[str, Callable[[Path], dict[str, str]]] = {"demo": demo}


def profile_parameters(name: str, local_dir: Path, declared: set[str] | None = None) -> dict[str, str]:
    """The profile's overrides, restricted to `declared` parameters when given."""
    if name not in PROFILES:
        raise KeyError(f"unknown profile {name!r}; profiles: {', '.join(PROFILES)}")
    values = PROFILES[name](local_dir)
    if declared is not None:
        values = {k: v for k, v in values.items() if k in declared}
    return values
