"""MLflow scoring-server protocol (`POST /invocations`): request parsing and response shape.

The same inputs `mlflow models serve` takes for this model: JSON with one of `dataframe_split`,
`dataframe_records`, `instances` or `inputs` (optionally `params`, ignored: the model takes none),
or CSV with a header. The texts are the `text` column, or the only column. The answer is what the
project's pyfunc model returns (`shared/pyfunc_model.py`), in MLflow's envelope:
`{"predictions": [{"emotion", "confidence", "score_<label>"...}, ...]}`. Errors use MLflow's codes
and body: 400 `{"error_code": "BAD_REQUEST", "message": ...}` for bad input, 415 (text/plain) for
an unsupported content type or charset.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CONTENT_TYPES = ("application/json", "text/csv")
TEXT_COLUMN = "text"


class MlflowInputError(Exception):
    """Bad input: 400 with MLflow's error body (`status_code` 415 for the content type)."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def body(self) -> dict[str, str]:
        return {"error_code": "BAD_REQUEST", "message": self.message}


def _pick_column(columns: list[Any], where: str) -> int:
    if TEXT_COLUMN in columns:
        return columns.index(TEXT_COLUMN)
    if len(columns) == 1:
        return 0
    raise MlflowInputError(f"{where}: expected a '{TEXT_COLUMN}' column or a single column, got {columns}")


def _from_rows(rows: Any, where: str) -> list[Any]:
    """Texts from a list of strings, of one-element lists, or of {"text": ...} records."""
    if not isinstance(rows, list):
        raise MlflowInputError(f"{where} must be a list")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            if TEXT_COLUMN in row:
                out.append(row[TEXT_COLUMN])
            elif len(row) == 1:
                out.append(next(iter(row.values())))
            else:
                raise MlflowInputError(f"{where}[{i}]: expected a '{TEXT_COLUMN}' field, got {sorted(row)}")
        elif isinstance(row, list):
            if len(row) != 1:
                raise MlflowInputError(f"{where}[{i}]: expected one value per row, got {len(row)}")
            out.append(row[0])
        else:
            out.append(row)
    return out


def _from_split(split: Any) -> list[Any]:
    if not isinstance(split, dict) or "data" not in split:
        raise MlflowInputError("dataframe_split must be an object with 'data' (and optionally 'columns')")
    data = split["data"]
    columns = split.get("columns")
    if columns is None:
        return _from_rows(data, "dataframe_split.data")
    if not isinstance(columns, list) or not isinstance(data, list):
        raise MlflowInputError("dataframe_split.columns and .data must be lists")
    col = _pick_column(columns, "dataframe_split.columns")
    out = []
    for i, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise MlflowInputError(f"dataframe_split.data[{i}] must be a list of {len(columns)} values")
        out.append(row[col])
    return out


def _from_json(body: bytes) -> list[Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MlflowInputError(
            f"Ensure that input is a valid JSON formatted string. Error: '{exc}'"
        ) from None
    if not isinstance(payload, dict):
        raise MlflowInputError(f"The input must be a JSON dictionary with exactly one of {list(JSON_KEYS)}")
    keys = [k for k in JSON_KEYS if k in payload]
    unknown = set(payload) - set(JSON_KEYS) - {"params"}
    if len(keys) != 1 or unknown:
        raise MlflowInputError(
            f"The input must be a JSON dictionary with exactly one of {list(JSON_KEYS)} (and optionally "
            f"'params'); got keys {sorted(payload)}"
        )
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        return _from_split(value)
    if key == "dataframe_records":
        return _from_rows(value, key)
    if isinstance(value, dict):  # {"inputs": {"text": [...]}} (named tensors)
        if TEXT_COLUMN in value or len(value) == 1:
            value = value.get(TEXT_COLUMN, next(iter(value.values())))
        else:
            raise MlflowInputError(f"{key}: expected a '{TEXT_COLUMN}' entry, got {sorted(value)}")
    if isinstance(value, str):
        value = [value]
    return _from_rows(value, key)


def _from_csv(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MlflowInputError(f"Ensure that input is a valid UTF-8 encoded string. Error: '{exc}'") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise MlflowInputError(f"Failed to parse input as a CSV with a header: {exc}") from None
    if not rows:
        raise MlflowInputError("CSV input is empty: expected a header and one row per text")
    col = _pick_column(rows[0], "CSV header")
    out = []
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != len(rows[0]):
            raise MlflowInputError(f"CSV row {i} has {len(row)} fields, the header has {len(rows[0])}")
        out.append(row[col])
    return out


def parse_invocation(body: bytes, content_type: str | None) -> list[str]:
    """The texts of an /invocations request; MlflowInputError (400 / 415) when it is not usable."""
    parts = [p.strip() for p in (content_type or "").split(";")]
    mime = parts[0].lower()
    params = {k.strip().lower(): v.strip().lower() for k, _, v in (p.partition("=") for p in parts[1:] if p)}
    if params.get("charset", "utf-8") != "utf-8":
        raise MlflowInputError("The scoring server only supports UTF-8", 415)
    if set(params) - {"charset"}:
        raise MlflowInputError(
            f"Unrecognized content type parameters: {', '.join(sorted(set(params) - {'charset'}))}", 415
        )
    if mime == "application/json":
        values = _from_json(body)
    elif mime == "text/csv":
        values = _from_csv(body)
    else:
        raise MlflowInputError(
            f"This predictor only supports the following content types: {list(CONTENT_TYPES)}. "
            f"Got '{content_type or ''}'.",
            415,
        )
    texts = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            raise MlflowInputError(f"row {i}: the text must be a string, got {type(v).__name__}")
        texts.append(v)
    return texts


def predictions(probs: np.ndarray, labels: dict[int, str]) -> dict[str, list[dict[str, Any]]]:
    """The pyfunc model's DataFrame, as MLflow serializes it (records)."""
    names = [labels[i] for i in sorted(labels)]
    rows = []
    for p in probs:
        best = int(p.argmax())
        row: dict[str, Any] = {"emotion": names[best], "confidence": float(p[best])}
        row.update({f"score_{name}": float(p[j]) for j, name in enumerate(names)})
        rows.append(row)
    return {"predictions": rows}
