"""The model card of a registered version: Markdown, shown by the MLflow UI as its description.

It answers "what is this model" without digging: data version and hash, rows per split, the
hyperparameters and the search that chose them, metrics overall and per class on the gate's
split, calibration, the confusion matrix, the promotion decision, intended use and known
limitations. The full card is also logged as `model_card.md` next to the evaluation report; the
description holds the same card, shortened if needed to MLflow's 5,000-character limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.mlflow_contract import DATA_VERSION_TAG, DATASET_HASH_TAG, TRAIN_ROWS_PARAM, TUNE_ROWS_PARAM
from steps.register.evaluate import EvalMetrics

MAX_DESCRIPTION_CHARS = 5000  # MLflow's model version description column

INTENDED_USE = (
    "Classify the emotion expressed in a short English text, such as a tweet, into one of six "
    "classes: sadness, joy, love, anger, fear, surprise. `confidence` is the calibrated "
    "probability of the predicted class."
)
LIMITATIONS = (
    "Trained on English tweets only; other languages, domains (reviews, chat, formal text) and "
    "long texts are out of scope.",
    "Six emotions only: every input gets one of them; there is no neutral or 'none' class, and "
    "mixed emotions get a single label.",
    "Short texts: inputs are truncated to 128 tokens (the training texts have ~20 tokens median).",
    "Imbalanced classes: surprise and love are rare in the data; check their recall below before "
    "relying on them.",
)


@dataclass
class CardInputs:
    """Everything the card shows; register fills it from the runs, the evaluation and the gate."""

    model_name: str
    version: str | None
    tags: Mapping[str, str]  # version tags: lineage, runs, trial
    hyperparameters: Mapping[str, str]  # the chosen trial's params
    parent_params: Mapping[str, str]  # the search's params (rows, search settings, tune split)
    parent_metrics: Mapping[str, float]  # the search's best metrics, failed trials
    metrics: EvalMetrics  # the challenger on the gate's split
    decision: Mapping[str, Any]  # steps.register.gate.decision_record(...)
    report_uri: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def _data_section(c: CardInputs) -> list[str]:
    t, p, m = c.tags, c.parent_params, c.metrics
    return [
        "## Data",
        *_table(
            ["data version", "dataset hash", "training rows", "tune rows", f"{m.split} rows"],
            [
                [
                    t.get(DATA_VERSION_TAG),
                    (t.get(DATASET_HASH_TAG) or "n/a")[:16],
                    p.get(TRAIN_ROWS_PARAM),
                    p.get(TUNE_ROWS_PARAM),
                    m.rows,
                ]
            ],
        ),
        "",
        "Splits: the weights are fitted on *train*; the search ranks trials and fits the temperature "
        f"on *tune* (carved out of the training rows, never trained on); *{m.split}* is used only by "
        "the promotion gate and this card.",
    ]


def _search_section(c: CardInputs) -> list[str]:
    p, pm = c.parent_params, c.parent_metrics
    hp = ", ".join(f"`{k}={v}`" for k, v in c.hyperparameters.items()) or "n/a"
    return [
        "## Training and search",
        f"- Base model: `{p.get('model', 'n/a')}`; hyperparameters: {hp}",
        f"- Search: {p.get('num_samples', 'n/a')} trials ({p.get('search_alg', 'n/a')}, ASHA grace "
        f"{p.get('asha_grace_period', 'n/a')}, reduction {p.get('asha_reduction_factor', 'n/a')}), up to "
        f"{p.get('max_epochs', 'n/a')} epochs; best trial `{c.tags.get('trial_id', 'n/a')}` by "
        f"{p.get('search_metric', 'val_loss')} on the {p.get('selection_split', 'validation')} split "
        f"(loss {_fmt(pm.get('best_val_loss'))}, accuracy {_fmt(pm.get('best_val_accuracy'))}); "
        f"failed trials: {_fmt(pm.get('failed_trials'), 0)}",
    ]


def _metrics_section(c: CardInputs) -> list[str]:
    m = c.metrics
    rows = [[k.label, k.precision, k.recall, k.f1, k.support] for k in m.per_class]
    return [
        f"## Metrics on {m.split} ({m.rows} rows)",
        f"Accuracy **{m.accuracy:.4f}**, macro-F1 **{m.f1_macro:.4f}**.",
        "",
        *_table(["class", "precision", "recall", "F1", "support"], rows),
    ]


def _calibration_section(c: CardInputs) -> list[str]:
    cal = c.metrics.calibration
    if cal is None:
        return ["## Calibration", "Not measured."]
    p = c.parent_params
    applied = (
        "applied" if cal.temperature != 1.0 else "1.0 kept (fitting did not improve calibration on tune)"
    )
    return [
        "## Calibration",
        f"Temperature **{cal.temperature:.4f}** ({applied}; fitted on the tune split, "
        f"{p.get('tune_rows', 'n/a')} rows). On {c.metrics.split}: expected calibration error "
        f"{cal.ece_before:.4f} -> **{cal.ece_after:.4f}**, NLL {cal.nll_before:.4f} -> {cal.nll_after:.4f} "
        f"({cal.bins} bins).",
    ]


def _confusion_section(c: CardInputs) -> list[str]:
    m = c.metrics
    rows = [[name, *row] for name, row in zip(m.label_names, m.confusion, strict=True)]
    return ["## Confusion matrix (rows: true, columns: predicted)", *_table(["", *m.label_names], rows)]


def _gate_section(c: CardInputs, *, per_class: bool) -> list[str]:
    d = c.decision
    rows = [
        [
            k["metric"],
            k["challenger"],
            k["champion"],
            k["delta"],
            k["tolerance"],
            "yes" if k["passed"] else "no",
        ]
        for k in d.get("checks", [])
    ]
    lines = [
        "## Promotion gate",
        d.get("reason", "n/a"),
        "",
        *_table(["metric", "this model", "champion", "delta", "tolerance", "within"], rows),
    ]
    recall = d.get("per_class_recall") or {}
    if per_class and recall.get("champion"):
        ours, theirs = recall["challenger"], recall["champion"]
        lines += [
            "",
            *_table(["recall", *ours], [["this model", *ours.values()], ["champion", *theirs.values()]]),
        ]
    return lines


def _use_section() -> list[str]:
    return ["## Intended use", INTENDED_USE, "", "## Known limitations", *[f"- {x}" for x in LIMITATIONS]]


def _lineage_section(c: CardInputs) -> list[str]:
    t = c.tags
    lines = [
        "## Lineage",
        f"hpo parent run `{t.get('parent_run_id', 'n/a')}`, child run `{t.get('source_run_id', 'n/a')}`; "
        f"code `{t.get('code_version', 'n/a')}`, image `{t.get('docker_image_tag', 'n/a')}`, "
        f"workflow `{t.get('argo_workflow_uid', 'n/a')}`; "
        f"data registry `{t.get('dvc_registry_url', 'n/a')}`.",
    ]
    if c.report_uri:
        lines.append(f"Evaluation report and full card: `{c.report_uri}`")
    return lines


def model_card(c: CardInputs, *, compact: bool = False) -> str:
    """The card as Markdown; `compact` leaves out the recall comparison and the confusion matrix."""
    title = f"# {c.model_name}" + (f" v{c.version}" if c.version else "")
    sections = [
        [title, INTENDED_USE.split(". ")[0] + "."],
        _data_section(c),
        _search_section(c),
        _metrics_section(c),
        _calibration_section(c),
        [] if compact else _confusion_section(c),
        _gate_section(c, per_class=not compact),
        _use_section()[3:] if compact else _use_section(),
        _lineage_section(c),
    ]
    return "\n\n".join("\n".join(s) for s in sections if s) + "\n"


def description(c: CardInputs) -> str:
    """The card for the version's description: full if it fits MLflow's limit, else compact, else clipped."""
    text = model_card(c)
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = model_card(c, compact=True)
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[: MAX_DESCRIPTION_CHARS - 4] + "...\n"
    return text
