"""tokenize-to-parquet core: every split tokenized once, streamed in bounded memory.

Each split is read as Arrow record batches, every batch goes through the fast (Rust) tokenizer
in one `encode_batch` call, and the token ids become an Arrow `list<int32>` column built from
flat numpy arrays (no per-row Python objects beyond what the tokenizer returns). Output rows
are written as parquet row groups of a fixed size, so memory is bounded by one batch whatever
the dataset's size. Same input and parameters -> byte-identical output.

`limit` caps the training rows and `eval_limit` the rows of every other split (validation,
test, tune), each stratified by label (each label keeps its share, every present label at least
one row), chosen with a seeded generator and kept in the original row order.

Splits have one job each. The source's training rows are divided into `train` (the weights are
fitted on it) and `tune` (hpo selects its best trial and fits the temperature on it; never
trained on): `tune_fraction` of the source's training rows, capped by `eval_limit`. With a
`limit`, the training rows are picked first (the same rows as without a tune split) and the tune
rows come from the training rows beyond the limit, so a limited run loses no training rows. The
`validation` (or `test`) split is left to register's promotion gate.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from shared.data_registry.atomic import atomic_replace_dir, sibling_tmp_dir
from shared.data_registry.format import REQUIRED_SPLITS, split_files, validate_dataset
from shared.data_registry.hashing import file_sha256
from shared.errors import StepError
from shared.model_package import resolve_model_reference, write_labels
from shared.progress import NO_PROGRESS, Progress
from steps.tokenize.contract import TokenizeInput, TokenizeResult

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
TOKENIZER_DIR = "tokenizer"
TRAIN_SPLIT = "train"
TUNE_SPLIT = "tune"  # carved out of the source's training rows: model selection, calibration
# The inputs a manifest records (every `TokenizeInput` field but the two folders): `manifest_inputs`.
RECORDED_INPUTS = tuple(
    name for name in TokenizeInput.model_fields if name not in ("dataset_dir", "output_dir")
)
SPLIT_ROLES = {
    "train": "fits the weights",
    "tune": "hpo: selects the best trial (ASHA, val_* trial metrics) and fits the temperature",
    "validation": "register: the promotion gate (when there is no test split)",
    "test": "register: the promotion gate (when present)",
}


def manifest_inputs(manifest: dict[str, Any]) -> dict[str, Any]:
    """The inputs that made a tokenized directory (the `TokenizeInput` fields but its two folders),
    as its manifest records them; a manifest that records some of them gives only those.

    Tokenizing the same dataset with them again gives the same files: hpo records them on its
    parent run so that `python -m steps.hpo reproduce` can rebuild a trial's data from the run.
    """
    out: dict[str, Any] = {name: manifest[name] for name in RECORDED_INPUTS if name in manifest}
    for name in ("limit", "eval_limit"):  # the manifest writes an unset limit (0) as null
        if name in out and out[name] is None:
            out[name] = 0
    if "fraction" in (manifest.get("tune") or {}):
        out["tune_fraction"] = manifest["tune"]["fraction"]
    return out


def stratified_indices(labels: np.ndarray, limit: int, seed: int, salt: str = "") -> np.ndarray:
    """Sorted row indices: `limit` rows keeping each label's share (largest remainders).

    Every label present gets at least one row when `limit` allows it. Deterministic for a
    given (labels, limit, seed, salt).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if limit >= n:
        return np.arange(n, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts / n * limit
    quota = np.floor(exact).astype(np.int64)
    order = np.lexsort((classes, -(exact - quota)))  # largest remainder first, ties by label
    quota[order[: limit - int(quota.sum())]] += 1
    if limit >= len(classes):
        for i in np.flatnonzero(quota == 0):  # take a row from the label with most rows
            quota[int(np.argmax(quota))] -= 1
            quota[i] = 1
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(salt.encode())])
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=int(q), replace=False)
        for c, q in zip(classes, quota, strict=True)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def carve_tune_split(
    labels: np.ndarray, *, limit: int, tune_fraction: float, tune_limit: int, seed: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """(train row indices or None for all, tune row indices) of the source's training rows.

    Disjoint and each stratified. The tune split has `round(tune_fraction * rows)` rows (at least
    one, capped by `tune_limit` when > 0). With a `limit` that leaves room for it, the training
    rows are exactly `stratified_indices(labels, limit)` (as if there were no tune split) and the
    tune rows are drawn from the remaining rows; otherwise the tune rows are drawn first and the
    training rows are the rest, capped by `limit`.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n < 2:
        raise StepError(f"the training split has {n} row(s): at least 2 are needed to carve a tune split")
    tune_n = max(1, round(tune_fraction * n))
    if tune_limit:
        tune_n = min(tune_n, tune_limit)
    tune_n = min(tune_n, n - 1)
    everything = np.arange(n, dtype=np.int64)
    if limit and limit + tune_n <= n:
        train = stratified_indices(labels, limit, seed, salt=TRAIN_SPLIT)
        rest = np.setdiff1d(everything, train, assume_unique=True)
        tune = rest[stratified_indices(labels[rest], tune_n, seed, salt=TUNE_SPLIT)]
        return train, tune
    tune = stratified_indices(labels, tune_n, seed, salt=TUNE_SPLIT)
    rest = np.setdiff1d(everything, tune, assume_unique=True)
    if limit and limit < len(rest):
        rest = rest[stratified_indices(labels[rest], limit, seed, salt=TRAIN_SPLIT)]
    return rest, tune


def tree_sha256(root: Path) -> str:
    """One sha256 over every file under `root` (relative path + content hash, in path order)."""
    import hashlib

    lines = [
        f"{p.relative_to(root).as_posix()}\0{file_sha256(p)}\n"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def output_schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("input_ids", pa.list_(pa.int32()), nullable=False),
            pa.field("label", pa.int64(), nullable=False),
            pa.field("length", pa.int32(), nullable=False),
        ]
    )


def load_tokenizer(model: str):
    """The model's fast tokenizer (an installed model package, a directory or a hub id)."""
    from transformers import AutoTokenizer

    ref = resolve_model_reference(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise StepError(f"cannot load a tokenizer for model {model!r} ({ref}): {exc}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise StepError(f"model {model!r} has no fast (Rust) tokenizer; tokenize needs one for throughput")
    return tokenizer


def batch_encoder(tokenizer, max_length: int):
    """A function texts -> (flat int32 ids, int32 lengths), equal to `tokenizer(texts, truncation=True,
    max_length=max_length)["input_ids"]` but without padding and per-row Python calls.

    Works on a private copy of the Rust tokenizer so the saved tokenizer files stay as shipped.
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.enable_truncation(max_length=max_length)
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)

    def encode_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        id_lists = [e.ids for e in encode(texts, add_special_tokens=True)]
        lengths = np.fromiter(map(len, id_lists), dtype=np.int32, count=len(id_lists))
        flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int32, count=int(lengths.sum()))
        return flat, lengths

    return encode_texts


class _RowGroupWriter:
    """Writes tables to parquet as row groups of exactly `rows_per_group` rows (the last may be short)."""

    def __init__(self, path: Path, rows_per_group: int):
        import pyarrow.parquet as pq

        self._writer = pq.ParquetWriter(path, output_schema(), compression="zstd", write_statistics=True)
        self._rows = rows_per_group
        self._pending: list[Any] = []
        self._pending_rows = 0

    def write(self, table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self._rows:
            self._flush(self._rows)

    def _flush(self, n: int) -> None:
        import pyarrow as pa

        table = pa.concat_tables(self._pending).combine_chunks()
        self._writer.write_table(table.slice(0, n), row_group_size=n)
        rest = table.slice(n)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self) -> None:
        if self._pending_rows:
            self._flush(self._pending_rows)
        self._writer.close()


def _read_labels(src: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    return pq.ParquetFile(src).read(columns=["label"]).column("label").to_numpy()


def _eval_rows(src: Path, split: str, inp: TokenizeInput) -> np.ndarray | None:
    """The rows of an evaluation split kept under `eval_limit` (None: all of them)."""
    import pyarrow.parquet as pq

    if inp.eval_limit and inp.eval_limit < pq.ParquetFile(src).metadata.num_rows:
        return stratified_indices(_read_labels(src), inp.eval_limit, inp.seed, salt=split)
    return None


def _tokenize_split(
    src: Path, dest: Path, keep: np.ndarray | None, encode, inp: TokenizeInput
) -> tuple[int, int, int]:
    """Tokenize the rows `keep` (sorted indices; None = all) of one split file into `dest`;
    return (rows, tokens, rows at max length)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(src)
    writer = _RowGroupWriter(dest, inp.batch_size)
    rows = tokens = at_max = 0
    offset = 0
    try:
        for batch in pf.iter_batches(batch_size=inp.batch_size, columns=["text", "label"]):
            n = batch.num_rows
            if keep is not None:
                lo, hi = np.searchsorted(keep, [offset, offset + n])
                batch = batch.take(pa.array(keep[lo:hi] - offset))
            offset += n
            if batch.num_rows == 0:
                continue
            flat, lengths = encode(batch.column(0).to_pylist())
            offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
            np.cumsum(lengths, out=offsets[1:])
            table = pa.Table.from_arrays(
                [
                    pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
                    batch.column(1).cast(pa.int64()),
                    pa.array(lengths),
                ],
                schema=output_schema(),
            )
            writer.write(table)
            rows += len(lengths)
            tokens += int(lengths.sum())
            at_max += int((lengths >= inp.max_length).sum())
    finally:
        writer.close()
    return rows, tokens, at_max


def tokenize(inp: TokenizeInput, progress: Progress = NO_PROGRESS) -> TokenizeResult:
    """Tokenize every split of `inp.dataset_dir` into `inp.output_dir`, all or nothing (`progress`: rows)."""
    label_map, stats = validate_dataset(inp.dataset_dir, REQUIRED_SPLITS)
    if sorted(label_map) != list(range(len(label_map))):
        raise StepError(
            f"label ids in {Path(inp.dataset_dir) / 'metadata.json'} must be 0..{len(label_map) - 1} "
            f"for a classifier head, found {sorted(label_map)}"
        )
    tokenizer = load_tokenizer(inp.model)
    encode = batch_encoder(tokenizer, inp.max_length)
    splits = split_files(inp.dataset_dir)
    encode = progress.counting(encode)  # rows out of all the rows kept (limits applied)
    progress.set_total(
        sum(
            min(stats[s].rows, (inp.limit if s == TRAIN_SPLIT else inp.eval_limit) or stats[s].rows)
            for s in splits
        )
    )
    rows: dict[str, int] = {}
    tokens: dict[str, int] = {}
    at_max: dict[str, int] = {}
    started = time.perf_counter()
    with sibling_tmp_dir(inp.output_dir) as tmp:
        staged = tmp / "tokenized"
        staged.mkdir()
        train_rows, tune_rows = carve_tune_split(
            _read_labels(splits[TRAIN_SPLIT]),
            limit=inp.limit,
            tune_fraction=inp.tune_fraction,
            tune_limit=inp.eval_limit,
            seed=inp.seed,
        )
        jobs = [(TRAIN_SPLIT, splits[TRAIN_SPLIT], train_rows), (TUNE_SPLIT, splits[TRAIN_SPLIT], tune_rows)]
        jobs += [(s, src, _eval_rows(src, s, inp)) for s, src in splits.items() if s != TRAIN_SPLIT]
        for split, src, keep in jobs:
            rows[split], tokens[split], at_max[split] = _tokenize_split(
                src, staged / f"{split}.parquet", keep, encode, inp
            )
        elapsed = time.perf_counter() - started
        tokenizer.save_pretrained(staged / TOKENIZER_DIR)
        write_labels(label_map, staged)
        manifest = {
            "model": inp.model,
            "tokenizer_class": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
            "pad_token_id": tokenizer.pad_token_id,
            "max_length": inp.max_length,
            "limit": inp.limit or None,
            "eval_limit": inp.eval_limit or None,
            "seed": inp.seed,
            "batch_size": inp.batch_size,
            "rows": rows,
            "tokens": tokens,
            "rows_at_max_length": at_max,
            "tune": {
                "source_split": TRAIN_SPLIT,
                "fraction": inp.tune_fraction,
                "rows": rows[TUNE_SPLIT],
                "from_rows_beyond_limit": bool(inp.limit) and rows[TRAIN_SPLIT] == inp.limit,
            },
            "split_roles": {k: v for k, v in SPLIT_ROLES.items() if k in rows},
            "outputs_sha256": {split: file_sha256(staged / f"{split}.parquet") for split in rows},
            "source": {
                split: {"file": src.name, "rows": stats[split].rows, "sha256": file_sha256(src)}
                for split, src in splits.items()
            },
        }
        (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        digest = tree_sha256(staged)
        atomic_replace_dir(staged, inp.output_dir)
    total = sum(rows.values())
    progress.finish()
    log.info(
        "tokenized %d rows (%s) in %.1fs: %.0f texts/s",
        total,
        ", ".join(f"{k} {v}" for k, v in rows.items()),
        elapsed,
        total / max(elapsed, 1e-9),
    )
    return TokenizeResult(
        output_dir=str(inp.output_dir),
        model=inp.model,
        max_length=inp.max_length,
        limit=inp.limit or None,
        eval_limit=inp.eval_limit or None,
        tune_fraction=inp.tune_fraction,
        rows=rows,
        tokens=tokens,
        rows_at_max_length=at_max,
        tokenized_hash=digest,
    )
