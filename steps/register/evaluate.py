"""Evaluate a model directory on a raw dataset split: metrics, per-class table, confusion matrix.

The split is the dvc-fetch output (`text`, `label` columns + `metadata.json` label map), tokenized
here with the model's own tokenizer, so champion and challenger are compared on the same texts
even when they were trained with different tokenizers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from shared.errors import StepError
from shared.results import atomic_write_text

EVAL_SPLITS = ("test", "validation")  # first present wins: test when the dataset version has one
MAX_LENGTH = 128
METRICS = ("accuracy", "f1_macro")


@dataclass(frozen=True)
class EvalData:
    """The texts a model is judged on, with gold label names and a hash identifying them."""

    split: str
    texts: list[str]
    labels: list[str]
    label_names: list[str]  # in id order, from metadata.json
    data_hash: str


class ClassMetrics(BaseModel):
    label: str
    precision: float
    recall: float
    f1: float
    support: int


class CalibrationMetrics(BaseModel):
    """The model's confidences on the evaluation split, raw (temperature 1) and as served."""

    temperature: float  # from the model's temperature.json (1.0 without one)
    ece_before: float  # expected calibration error of softmax(logits)
    ece_after: float  # ... of softmax(logits / temperature): what serving returns
    nll_before: float
    nll_after: float
    bins: int


class EvalMetrics(BaseModel):
    split: str
    rows: int
    data_hash: str
    accuracy: float
    f1_macro: float
    per_class: list[ClassMetrics]
    confusion: list[list[int]]  # rows: gold label, columns: predicted, both in label_names order
    label_names: list[str]
    calibration: CalibrationMetrics | None = None  # None in reports written before calibration

    def score(self, metric: str) -> float:
        if metric not in METRICS:
            raise StepError(f"unknown metric {metric!r}; allowed: {', '.join(METRICS)}")
        return float(getattr(self, metric))


def read_label_map(dataset_dir: Path) -> list[str]:
    """Label names in id order from the dataset's `metadata.json` (`label_map`)."""
    path = Path(dataset_dir) / "metadata.json"
    if not path.is_file():
        raise StepError(f"{path} is missing: the dataset dir must be the dvc-fetch output")
    try:
        label_map = json.loads(path.read_text())["label_map"]
        ids = sorted(int(k) for k in label_map)
    except (ValueError, KeyError, TypeError) as exc:
        raise StepError(f"{path}: field 'label_map' must map label ids to names ({exc})") from None
    if ids != list(range(len(ids))) or not ids:
        raise StepError(f"{path}: label_map ids must be 0..n-1, got {ids}")
    return [str(label_map[str(i)]) for i in ids]


def load_eval_split(dataset_dir: Path, limit: int = 0, seed: int = 0) -> EvalData:
    """Read the test split (or validation when there is no test split), optionally a sample of it."""
    import pandas as pd

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise StepError(f"dataset dir {dataset_dir} does not exist")
    label_names = read_label_map(dataset_dir)
    split = next((s for s in EVAL_SPLITS if (dataset_dir / f"{s}.parquet").is_file()), None)
    if split is None:
        raise StepError(f"{dataset_dir} has neither test.parquet nor validation.parquet")
    path = dataset_dir / f"{split}.parquet"
    df = pd.read_parquet(path)
    missing = {"text", "label"} - set(df.columns)
    if missing:
        raise StepError(f"{path}: missing column(s) {sorted(missing)}; has {list(df.columns)}")
    bad = (~df["label"].isin(range(len(label_names)))).to_numpy().nonzero()[0]
    if len(bad):
        value = df["label"].iloc[bad[0]]
        raise StepError(
            f"{path}: row {int(bad[0])} has label {getattr(value, 'item', lambda: value)()!r}; "
            f"allowed: 0..{len(label_names) - 1} ({', '.join(label_names)})"
        )
    if df.empty:
        raise StepError(f"{path} has no rows")
    if 0 < limit < len(df):
        df = df.sample(n=limit, random_state=seed).sort_index()
    texts = df["text"].astype(str).tolist()
    labels = [label_names[int(i)] for i in df["label"]]
    digest = hashlib.sha256(json.dumps([split, texts, labels]).encode()).hexdigest()
    return EvalData(split=split, texts=texts, labels=labels, label_names=label_names, data_hash=digest)


def predict_logits(
    model_dir: Path, texts: list[str], batch_size: int = 64, on_rows: Callable[[int], None] | None = None
):
    """(float32 logits in the model's label-id order, the model's labels), batching texts of
    similar length so padding stays small. `on_rows(n)` is called after each batch (progress)."""
    import numpy as np
    import torch

    from shared.model_package import load_model_dir

    model, tokenizer, labels = load_model_dir(Path(model_dir))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), len(labels)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = [texts[i] for i in idx]
            enc = tokenizer(batch, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
            out[idx] = model(**enc).logits.float().numpy()
            if on_rows is not None:
                on_rows(len(idx))
    return out, labels


def calibration_metrics(logits, gold_ids, temperature: float) -> CalibrationMetrics:
    """ECE and NLL of the confidences without (T=1) and with the model's temperature."""
    from shared.calibration import ECE_BINS, expected_calibration_error, nll, softmax

    return CalibrationMetrics(
        temperature=float(temperature),
        ece_before=expected_calibration_error(softmax(logits), gold_ids),
        ece_after=expected_calibration_error(softmax(logits, temperature), gold_ids),
        nll_before=nll(logits, gold_ids),
        nll_after=nll(logits, gold_ids, temperature),
        bins=ECE_BINS,
    )


def compute_metrics(
    data: EvalData, predicted: list[str], calibration: CalibrationMetrics | None = None
) -> EvalMetrics:
    """Accuracy, macro-F1 over the dataset's labels, per-class table and confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    names = data.label_names
    precision, recall, f1, support = precision_recall_fscore_support(
        data.labels, predicted, labels=names, zero_division=0
    )
    return EvalMetrics(
        split=data.split,
        rows=len(data.labels),
        data_hash=data.data_hash,
        accuracy=float(accuracy_score(data.labels, predicted)),
        f1_macro=float(f1_score(data.labels, predicted, labels=names, average="macro", zero_division=0)),
        per_class=[
            ClassMetrics(label=n, precision=float(p), recall=float(r), f1=float(f), support=int(s))
            for n, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        ],
        confusion=confusion_matrix(data.labels, predicted, labels=names).tolist(),
        label_names=names,
        calibration=calibration,
    )


def evaluate_model_dir(
    model_dir: Path, data: EvalData, on_rows: Callable[[int], None] | None = None, predict=None
) -> EvalMetrics:
    """Check the model speaks the dataset's labels, then score it on the data: predictions, and
    the calibration of its confidences with the temperature stored with it.

    `predict(model_dir, texts) -> label names` replaces the fp32 PyTorch predictions (register passes
    the serving artifact's, so the evaluated artifact is the served one); the calibration figures
    come from the model's fp32 logits either way.
    """
    import numpy as np

    from shared.model_package import read_labels, read_temperature

    model_labels = set(read_labels(Path(model_dir)).values())
    if model_labels != set(data.label_names):
        raise StepError(
            f"model labels {sorted(model_labels)} do not match "
            f"the dataset's label_map {sorted(data.label_names)}"
        )
    temperature = read_temperature(Path(model_dir))
    logits, labels = predict_logits(model_dir, data.texts, on_rows=on_rows)
    if predict is None:
        predicted = [labels[int(i)] for i in logits.argmax(axis=-1)]
    else:
        predicted = predict(model_dir, data.texts)
    model_id = {name: i for i, name in labels.items()}
    gold_ids = np.array([model_id[name] for name in data.labels], dtype=np.int64)
    return compute_metrics(data, predicted, calibration_metrics(logits, gold_ids, temperature))


def plot_confusion_matrix(metrics: EvalMetrics, path: Path, title: str = "") -> Path:
    """Save the confusion matrix as a PNG (no pyplot: no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = metrics.label_names
    fig = Figure(figsize=(6.5, 5.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(metrics.confusion, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = max((max(row) for row in metrics.confusion), default=0)
    for r, row in enumerate(metrics.confusion):
        for c, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            ax.text(c, r, str(count), ha="center", va="center", color=colour, fontsize=8)
    default_title = f"{metrics.split}: accuracy {metrics.accuracy:.3f}, macro-F1 {metrics.f1_macro:.3f}"
    ax.set_title(title or default_title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def per_class_csv(metrics: EvalMetrics) -> str:
    lines = ["label,precision,recall,f1,support"]
    lines += [f"{c.label},{c.precision:.4f},{c.recall:.4f},{c.f1:.4f},{c.support}" for c in metrics.per_class]
    return "\n".join(lines) + "\n"


def write_report(metrics: EvalMetrics, out_dir: Path) -> Path:
    """Write metrics.json (calibration included), per_class.csv and confusion_matrix.png."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "metrics.json", metrics.model_dump_json(indent=2) + "\n")
    atomic_write_text(out_dir / "per_class.csv", per_class_csv(metrics))
    plot_confusion_matrix(metrics, out_dir / "confusion_matrix.png")
    return out_dir
