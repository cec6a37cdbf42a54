"""The dataset format: a directory of `<split>.parquet` files plus `metadata.json`.

Columns `text` (string) and `label` (integer); `metadata.json` holds a `label_map` mapping label
ids to names (`{"0": "sadness", ...}`). These checks are shared by every consumer: the registry
refuses to publish a bad dataset, dvc-fetch refuses to hand one on, tokenize refuses to read one.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.data_registry.hashing import file_sha256
from shared.errors import StepError

METADATA_FILE = "metadata.json"
REQUIRED_SPLITS = ("train", "validation")
MAX_ROWS_SHOWN = 5
# Extra files a dataset directory may carry along into the registry (documentation).
EXTRA_FILES = ("README.md",)


@dataclass
class SplitStats:
    """What validation learns about one split: its row count and rows per label id."""

    rows: int = 0
    label_counts: dict[int, int] = field(default_factory=dict)

    def class_counts(self, label_map: dict[int, str]) -> dict[str, int]:
        """Rows per label *name*, in label-id order, zero for a label with no rows."""
        return {name: int(self.label_counts.get(i, 0)) for i, name in sorted(label_map.items())}


def read_metadata(dataset_dir: Path) -> dict[str, Any]:
    path = Path(dataset_dir) / METADATA_FILE
    if not path.is_file():
        raise StepError(f"{path} is missing: a dataset directory needs a metadata.json with a label_map")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StepError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise StepError(f"{path} must hold a JSON object, not {type(meta).__name__}")
    return meta


def read_label_map(dataset_dir: Path) -> dict[int, str]:
    """The `label_map` of a dataset directory as `{id: name}`, ids in order; StepError if unusable."""
    meta = read_metadata(dataset_dir)
    where = Path(dataset_dir) / METADATA_FILE
    raw = meta.get("label_map")
    if not isinstance(raw, dict) or not raw:
        raise StepError(f'{where}: "label_map" must be a non-empty object such as {{"0": "sadness"}}')
    label_map: dict[int, str] = {}
    for key, name in raw.items():
        try:
            label_id = int(key)
        except (TypeError, ValueError):
            raise StepError(f"{where}: label_map key {key!r} is not an integer label id") from None
        if not isinstance(name, str) or not name.strip():
            raise StepError(f"{where}: label_map[{key!r}] must be a non-empty label name, got {name!r}")
        label_map[label_id] = name
    if len(set(label_map.values())) != len(label_map):
        raise StepError(f"{where}: label_map has duplicate label names: {sorted(label_map.values())}")
    return dict(sorted(label_map.items()))


def split_files(dataset_dir: Path) -> dict[str, Path]:
    """`{split name: parquet path}` for every `<split>.parquet` in the directory, sorted by name."""
    return {p.stem: p for p in sorted(Path(dataset_dir).glob("*.parquet")) if p.is_file()}


def _rows_text(rows: list[int], total: int) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_ROWS_SHOWN])
    more = f" and {total - MAX_ROWS_SHOWN} more" if total > MAX_ROWS_SHOWN else ""
    return f"row{'s' if total > 1 else ''} {shown}{more} (0-based)"


def validate_split(path: Path, split: str, label_map: dict[int, str], batch_size: int = 65_536) -> SplitStats:
    """Stream one split and check its schema; return its row and label counts.

    `text` must be a non-empty (not all-whitespace) string, `label` an integer that is a key
    of the label map. The error names the split, the field and the first offending rows.
    Reads in batches, so memory stays bounded whatever the split's size.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise StepError(f"split {split!r}: {path} is not a readable parquet file ({exc})") from None
    schema = pf.schema_arrow
    for name in ("text", "label"):
        if name not in schema.names:
            raise StepError(
                f"split {split!r}, field {name!r}: column is missing from {path.name} "
                f"(columns: {', '.join(schema.names) or 'none'})"
            )
    text_type, label_type = schema.field("text").type, schema.field("label").type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)):
        raise StepError(f"split {split!r}, field 'text': expected a string column, found {text_type}")
    if not pa.types.is_integer(label_type):
        raise StepError(f"split {split!r}, field 'label': expected an integer column, found {label_type}")

    known = pa.array(sorted(label_map), type=pa.int64())
    stats = SplitStats()
    bad_text: list[int] = []
    bad_text_total = 0
    bad_label: list[tuple[int, Any]] = []
    bad_label_total = 0
    counts: Counter[int] = Counter()
    offset = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=["text", "label"]):
        text, label = batch.column(0), batch.column(1).cast(pa.int64(), safe=False)
        empty = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0), True)
        if pc.any(empty).as_py():
            idx = np.flatnonzero(empty.to_numpy(zero_copy_only=False))
            bad_text_total += len(idx)
            bad_text.extend(int(i) + offset for i in idx[: MAX_ROWS_SHOWN - len(bad_text)])
        unknown = pc.invert(pc.fill_null(pc.is_in(label, value_set=known), False))
        if pc.any(unknown).as_py():
            idx = np.flatnonzero(unknown.to_numpy(zero_copy_only=False))
            bad_label_total += len(idx)
            for i in idx[: MAX_ROWS_SHOWN - len(bad_label)]:
                bad_label.append((int(i) + offset, label[int(i)].as_py()))
        for item in pc.value_counts(label.filter(pc.invert(unknown))).to_pylist():
            counts[int(item["values"])] += int(item["counts"])
        offset += batch.num_rows
    stats.rows = offset
    stats.label_counts = dict(sorted(counts.items()))
    if bad_text_total:
        raise StepError(
            f"split {split!r}, field 'text': {bad_text_total} empty or missing text(s) at "
            f"{_rows_text(bad_text, bad_text_total)}; every row needs a non-empty string"
        )
    if bad_label_total:
        shown = ", ".join(f"{r} (label {v!r})" for r, v in bad_label[:MAX_ROWS_SHOWN])
        more = f" and {bad_label_total - MAX_ROWS_SHOWN} more" if bad_label_total > MAX_ROWS_SHOWN else ""
        raise StepError(
            f"split {split!r}, field 'label': {bad_label_total} label(s) not in the label map at rows "
            f"{shown}{more} (0-based); allowed: {sorted(label_map)} ({', '.join(label_map.values())})"
        )
    if stats.rows == 0:
        raise StepError(f"split {split!r}: {path.name} has no rows")
    return stats


def validate_dataset(
    dataset_dir: Path, required_splits: tuple[str, ...] | list[str] = REQUIRED_SPLITS
) -> tuple[dict[int, str], dict[str, SplitStats]]:
    """Check a dataset directory (label map, required splits, every split's schema).

    Returns the label map and per-split statistics; raises StepError naming the problem.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise StepError(f"dataset directory {dataset_dir} does not exist")
    label_map = read_label_map(dataset_dir)
    splits = split_files(dataset_dir)
    missing = [s for s in required_splits if s not in splits]
    if missing:
        raise StepError(
            f"required split(s) {', '.join(missing)} missing from {dataset_dir} "
            f"(expected {', '.join(f'{s}.parquet' for s in missing)}; "
            f"found: {', '.join(splits) or 'no splits'})"
        )
    stats = {name: validate_split(path, name, label_map) for name, path in splits.items()}
    return label_map, stats


def check_metadata_matches(dataset_dir: Path, stats: dict[str, SplitStats]) -> None:
    """Where metadata.json states a split's rows or sha256, they must match the files.

    A registry version is trusted as it is described; metadata that lies is caught here, before
    it is published, with a message saying what to fix.
    """
    meta = read_metadata(dataset_dir)
    described = meta.get("splits") or {}
    for split, info in described.items():
        if not isinstance(info, dict):
            continue
        path = Path(dataset_dir) / f"{split}.parquet"
        if split not in stats:
            raise StepError(
                f"{dataset_dir / METADATA_FILE} describes split {split!r} but {path.name} is missing"
            )
        if "rows" in info and int(info["rows"]) != stats[split].rows:
            raise StepError(
                f"{dataset_dir / METADATA_FILE}: splits.{split}.rows says {info['rows']} but {path.name} "
                f"has {stats[split].rows} rows; update metadata.json to describe the data"
            )
        if info.get("sha256") and info["sha256"] != file_sha256(path):
            raise StepError(
                f"{dataset_dir / METADATA_FILE}: splits.{split}.sha256 does not match {path.name}; "
                "update metadata.json (or remove the field) so it describes the data"
            )
