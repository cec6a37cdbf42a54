"""The tokenized data every trial trains on: loaded once, shared through Ray's object store.

A split is kept as flat numpy arrays (all token ids end to end + offsets), which Ray stores
once and every trial maps zero-copy. Batches are length-bucketed and padded only to the
longest row of the batch (the median text is ~20 tokens; padding to 128 wastes most compute).

The search reads two splits: `train` (fits the weights) and `tune` (carved out of the training
rows by the tokenize step; trials are ranked on it and the temperature is fitted on it). It never
reads `validation`: that split is kept untouched for register's promotion gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import StepError

SPLITS = ("train", "tune")  # validation is register's gate split: never read here
COLUMNS = ("input_ids", "label", "length")


@dataclass(frozen=True)
class TokenizedSplit:
    ids: np.ndarray  # int32, all rows' token ids end to end
    offsets: np.ndarray  # int64, start of row i in `ids`; len = rows + 1
    labels: np.ndarray  # int64
    lengths: np.ndarray  # int32

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: np.ndarray) -> TokenizedSplit:
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = self.ids[_gather_positions(self.offsets[index], lengths.astype(np.int64))]
        return TokenizedSplit(ids=ids, offsets=offsets, labels=self.labels[index], lengths=lengths)


@dataclass(frozen=True)
class TokenizedData:
    train: TokenizedSplit
    tune: TokenizedSplit  # model selection and calibration; the trial metrics val_* are computed on it
    labels: dict[int, str]
    pad_token_id: int
    tokenizer_dir: Path


def _gather_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat positions of rows [start, start+length) end to end, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    row_starts = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return row_starts + np.arange(total, dtype=np.int64)


def _read_split(path: Path) -> TokenizedSplit:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not path.is_file():
        raise StepError(f"tokenized file {path} is missing (run the tokenize step first)")
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise StepError(f"{path} lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    if table.num_rows == 0:
        raise StepError(f"{path} has no rows")
    col = table.column("input_ids").combine_chunks()
    ids = np.asarray(pc.list_flatten(col).to_numpy(zero_copy_only=False), dtype=np.int32)
    lengths = np.asarray(pc.list_value_length(col).to_numpy(zero_copy_only=False), dtype=np.int32)
    if (lengths == 0).any():
        row = int(np.flatnonzero(lengths == 0)[0])
        raise StepError(f"{path} row {row}: input_ids is empty")
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    labels = np.asarray(table.column("label").to_numpy(), dtype=np.int64)
    return TokenizedSplit(ids=ids, offsets=offsets, labels=labels, lengths=lengths)


def _stratified_index(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """`limit` row indices keeping each class's share (at least one row per class)."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * limit)).astype(int)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(picked))


def load_tokenized(tokenized_dir: Path, limit: int = 0, seed: int = 0) -> TokenizedData:
    """Read the tokenize step's output once; `limit` caps training rows (stratified)."""
    tokenized_dir = Path(tokenized_dir).resolve()  # trials run in other working directories
    if not tokenized_dir.is_dir():
        raise StepError(f"tokenized directory {tokenized_dir} does not exist")
    labels_path = tokenized_dir / "labels.json"
    if not labels_path.is_file():
        raise StepError(f"{labels_path} is missing (the tokenize step writes it)")
    labels = {int(k): str(v) for k, v in json.loads(labels_path.read_text()).items()}
    tokenizer_dir = tokenized_dir / "tokenizer"
    if not tokenizer_dir.is_dir():
        raise StepError(f"{tokenizer_dir} is missing (the tokenize step saves the tokenizer there)")
    train, tune = (_read_split(tokenized_dir / f"{s}.parquet") for s in SPLITS)
    for name, split in (("train", train), ("tune", tune)):
        bad = np.flatnonzero((split.labels < 0) | (split.labels >= len(labels)))
        if bad.size:
            raise StepError(
                f"{tokenized_dir / (name + '.parquet')} row {int(bad[0])}: label {int(split.labels[bad[0]])} "
                f"is not in labels.json (0..{len(labels) - 1})"
            )
    if limit and limit < len(train):
        train = train.subset(_stratified_index(train.labels, limit, seed))
    from transformers import AutoTokenizer

    pad = AutoTokenizer.from_pretrained(tokenizer_dir).pad_token_id
    return TokenizedData(
        train=train,
        tune=tune,
        labels=labels,
        pad_token_id=int(pad or 0),
        tokenizer_dir=tokenizer_dir,
    )


def bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None, bucket_batches: int = 50
) -> list[np.ndarray]:
    """Index batches of similar length.

    Training (`rng` given): shuffle, sort within chunks of `bucket_batches` batches by length,
    cut into batches and shuffle the batch order, so batches stay random but padding is small.
    Evaluation (`rng` None): sort everything by length (least padding, fixed order).
    """
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = rng.permutation(n)
        chunk = batch_size * bucket_batches
        order = np.concatenate(
            [c[np.argsort(lengths[c], kind="stable")] for c in np.array_split(order, max(1, -(-n // chunk)))]
        )
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def collate(
    split: TokenizedSplit, index: np.ndarray, pad_token_id: int, max_length: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input_ids, attention_mask, labels) for `index`, padded to the batch's longest row.

    With `max_length`, longer rows keep their first max_length-1 tokens and their last token
    (the separator), as a tokenizer truncating at that length would.
    """
    lengths = split.lengths[index].astype(np.int64)
    starts = split.offsets[index]
    kept = np.minimum(lengths, max_length) if max_length else lengths
    width = int(kept.max())
    ids = np.full((len(index), width), pad_token_id, dtype=np.int64)
    rows = np.repeat(np.arange(len(index)), kept)
    cols = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    ids[rows, cols] = split.ids[_gather_positions(starts, kept)]
    cut = np.flatnonzero(kept < lengths)
    if cut.size:
        ids[cut, kept[cut] - 1] = split.ids[starts[cut] + lengths[cut] - 1]
    mask = (np.arange(width)[None, :] < kept[:, None]).astype(np.int64)
    return ids, mask, split.labels[index]
