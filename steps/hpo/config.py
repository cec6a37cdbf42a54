"""The search space of the hpo step, read from YAML, and the hyperparameters a trial takes.

The search space is data, not code: each YAML entry names a hyperparameter the training loop
understands (`TrialParams`) and one distribution. Users add or change dimensions by editing the
file; a wrong entry fails before Ray starts, naming the entry and the allowed values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from shared.errors import StepError

DEFAULT_SEARCH_SPACE = Path(__file__).with_name("search_space.yaml")

# distribution name -> (required keys, optional keys)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uniform": (("low", "high"), ()),
    "loguniform": (("low", "high"), ()),
    "quniform": (("low", "high", "q"), ()),
    "qloguniform": (("low", "high", "q"), ()),
    "randint": (("low", "high"), ()),
    "lograndint": (("low", "high"), ()),
    "choice": (("values",), ()),
    "constant": (("value",), ()),
}


class TrialParams(BaseModel):
    """The hyperparameters one trial trains with; the search space may set any of them."""

    model_config = {"extra": "forbid"}

    learning_rate: float = Field(5e-5, gt=0)
    batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    max_length: int | None = Field(None, ge=2, description="truncate further than the tokenized data")
    num_epochs: int | None = Field(None, ge=1, description="this trial's epochs (capped by max epochs)")
    dropout: float | None = Field(None, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(1.0, gt=0)


HYPERPARAMETERS = tuple(TrialParams.model_fields)


def _check_number(name: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StepError(f"search space entry {name!r}: {key} must be a finite number, got {value!r}")
    return value


def validate_entry(name: str, spec: Any) -> dict[str, Any]:
    """Check one search-space entry; return it normalised. Errors name the entry and what is allowed."""
    if name not in HYPERPARAMETERS:
        raise StepError(
            f"search space entry {name!r} is not a hyperparameter the training loop knows; "
            f"allowed: {', '.join(HYPERPARAMETERS)}"
        )
    if not isinstance(spec, dict) or "distribution" not in spec:
        raise StepError(
            f"search space entry {name!r} must be a mapping with a 'distribution' "
            f"(one of: {', '.join(DISTRIBUTIONS)})"
        )
    dist = spec["distribution"]
    if dist not in DISTRIBUTIONS:
        raise StepError(
            f"search space entry {name!r}: unknown distribution {dist!r}; allowed: {', '.join(DISTRIBUTIONS)}"
        )
    required, optional = DISTRIBUTIONS[dist]
    missing = [k for k in required if k not in spec]
    extra = sorted(set(spec) - {"distribution", *required, *optional})
    if missing or extra:
        raise StepError(
            f"search space entry {name!r} ({dist}) needs keys {', '.join(required)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unexpected {', '.join(extra)}" if extra else "")
        )
    if dist == "choice":
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise StepError(f"search space entry {name!r}: choice needs a non-empty list of values")
        for v in values:
            _check_value(name, v)
    elif dist == "constant":
        _check_value(name, spec["value"])
    else:
        low = _check_number(name, "low", spec["low"])
        high = _check_number(name, "high", spec["high"])
        if not low < high:
            raise StepError(f"search space entry {name!r}: low ({low}) must be below high ({high})")
        if dist.startswith("log") or dist == "qloguniform":
            if low <= 0:
                raise StepError(f"search space entry {name!r}: {dist} needs low > 0, got {low}")
        if dist in ("randint", "lograndint") and not (float(low).is_integer() and float(high).is_integer()):
            raise StepError(f"search space entry {name!r}: {dist} needs integer low and high")
        if "q" in required:
            q = _check_number(name, "q", spec["q"])
            if q <= 0:
                raise StepError(f"search space entry {name!r}: q must be > 0, got {q}")
        _check_value(name, low)
    return dict(spec)


def _check_value(name: str, value: Any) -> None:
    """A sampled value must be one the training loop accepts (e.g. batch_size >= 1)."""
    try:
        TrialParams.model_validate({name: value})
    except ValidationError as exc:
        msg = "; ".join(e["msg"] for e in exc.errors())
        raise StepError(f"search space entry {name!r}: value {value!r} is not valid: {msg}") from None


def load_search_space(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read and validate a YAML search space (the packaged default when `path` is None)."""
    path = Path(path) if path is not None else DEFAULT_SEARCH_SPACE
    if not path.is_file():
        raise StepError(f"search space file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StepError(f"search space file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise StepError(f"search space file {path} must be a non-empty mapping of hyperparameter -> spec")
    return {str(name): validate_entry(str(name), spec) for name, spec in raw.items()}


def to_tune_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Turn a validated search space into Ray Tune sampling objects."""
    from ray import tune

    out: dict[str, Any] = {}
    for name, spec in space.items():
        dist = spec["distribution"]
        if dist == "choice":
            out[name] = tune.choice(list(spec["values"]))
        elif dist == "constant":
            out[name] = spec["value"]
        elif dist in ("quniform", "qloguniform"):
            out[name] = getattr(tune, dist)(spec["low"], spec["high"], spec["q"])
        elif dist in ("randint", "lograndint"):
            out[name] = getattr(tune, dist)(int(spec["low"]), int(spec["high"]))
        else:
            out[name] = getattr(tune, dist)(spec["low"], spec["high"])
    return out


def space_json(space: dict[str, dict[str, Any]]) -> str:
    return json.dumps(space, sort_keys=True)
