"""Named parameter profiles for local runs (`run_local --profile demo`).

A profile overrides the workflow's embedded defaults for one machine; `--param` overrides the
profile. Only parameters the workflow declares are applied, so a profile can serve several
workflows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

# A few hundred CPU optimizer steps need a higher learning rate than the full-data default to move
# MiniLM far from its start, and more epochs pay more than more rows (measurements: docs/benchmarks.md).
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
