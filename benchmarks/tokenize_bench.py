"""Tokenize-to-parquet benchmark: the step vs a naive per-row baseline, same data, same run.

    python benchmarks/tokenize_bench.py                 # 500,000 rows, prints a markdown table
    python benchmarks/tokenize_bench.py --update-docs   # ... and writes it into docs/benchmarks.md

A synthetic dataset the size of the unsplit emotion corpus (500,000 rows by default) is made
from the real corpus's word frequencies, text lengths and label shares. Each contender runs in
its own child process so its peak RSS (`ru_maxrss`) is its own:

- step:  `steps.tokenize.tokenize` (Arrow batches -> one fast-tokenizer call per batch -> parquet
  row groups), all splits;
- naive: the whole split in a pandas DataFrame, one tokenizer call per row
  (`df.text.map(lambda t: tokenizer(t, truncation=True, max_length=128)["input_ids"])`), then
  `to_parquet`. With `--naive-rows N` it runs on the first N rows only and its time is
  extrapolated linearly (its memory is then *not* representative; the table says so).

Throughput is texts per second of tokenize-and-write time (model/tokenizer loading excluded for
both); wall time includes everything. Timings are never asserted anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared.model_package import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
DATASET_DIR = Path(os.environ.get("EMOTION_DATASET_DIR", ROOT.parent / "shared" / "data" / "emotion"))
DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Tokenize-to-parquet (issue 3)"
MODEL = DEFAULT_MODEL
MAX_LENGTH = 128


def make_synthetic(
    out: Path, rows: int, seed: int = 0, validation_rows: int = 2_000, source: Path | None = None
) -> Path:
    """A dataset dir like the real one (`source`, default DATASET_DIR): texts drawn from its word
    frequencies and length distribution."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = Path(source or DATASET_DIR)
    real = pq.read_table(source / "train.parquet").to_pandas()
    words, counts = np.unique(np.concatenate(real["text"].str.split().to_numpy()), return_counts=True)
    word_p = counts / counts.sum()
    lengths_real = real["text"].str.split().map(len).to_numpy()
    label_p = np.bincount(real["label"], minlength=6) / len(real)
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)

    def write(split: str, n: int, chunk: int = 50_000) -> None:
        schema = pa.schema([("text", pa.string()), ("label", pa.int64())])
        with pq.ParquetWriter(out / f"{split}.parquet", schema) as writer:
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                lens = rng.choice(lengths_real, size=m)
                flat = words[rng.choice(len(words), size=int(lens.sum()), p=word_p)]
                bounds = np.concatenate(([0], np.cumsum(lens)))
                texts = [" ".join(flat[bounds[i] : bounds[i + 1]]) for i in range(m)]
                labels = rng.choice(6, size=m, p=label_p)
                writer.write_table(pa.table({"text": texts, "label": labels}, schema=schema))

    write("train", rows)
    write("validation", validation_rows)
    meta = json.loads((source / "metadata.json").read_text())
    (out / "metadata.json").write_text(
        json.dumps({"name": "emotion-synthetic", "version": "0", "label_map": meta["label_map"]}, indent=2)
    )
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_step(dataset: Path, out: Path) -> dict:
    from steps.tokenize import TokenizeInput, tokenize
    from steps.tokenize.core import load_tokenizer

    load_tokenizer(MODEL)  # warm the import/loading so the timing below is tokenize-and-write
    started, cpu = time.perf_counter(), time.process_time()
    result = tokenize(TokenizeInput(dataset_dir=dataset, output_dir=out, model=MODEL, max_length=MAX_LENGTH))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "rows": sum(result.rows.values()),
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "peak_rss_mb": _peak_rss_mb(),
    }


def child_naive(dataset: Path, out: Path, limit: int | None) -> dict:
    import pandas as pd

    from steps.tokenize.core import load_tokenizer

    tokenizer = load_tokenizer(MODEL)
    started, cpu = time.perf_counter(), time.process_time()
    out.mkdir(parents=True, exist_ok=True)
    rows = 0
    for split in ("train", "validation"):
        df = pd.read_parquet(dataset / f"{split}.parquet")
        if limit is not None:
            df = df.head(limit)
        df["input_ids"] = df["text"].map(
            lambda t: tokenizer(t, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        )
        df["length"] = df["input_ids"].map(len)
        df[["input_ids", "label", "length"]].to_parquet(out / f"{split}.parquet")
        rows += len(df)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"rows": rows, "seconds": elapsed, "cpu_seconds": cpu, "peak_rss_mb": _peak_rss_mb()}


def _run_child(kind: str, dataset: Path, out: Path, naive_rows: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--dataset", str(dataset), "--out", str(out)]
    if naive_rows is not None:
        cmd += ["--naive-rows", str(naive_rows)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "true", "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = wall
    return result


def _same_ids(step_out: Path, naive_out: Path, n: int = 2_000) -> bool:
    """The baseline's token ids of its first `n` training rows all appear in the step's output.

    The step carves the tune split out of the training rows, so a source row is in its `train`
    or its `tune` file; compared as sets of id sequences, not position by position.
    """
    import pyarrow.parquet as pq

    b = pq.read_table(naive_out / "train.parquet").slice(0, n).column("input_ids").to_pylist()
    a = set()
    for split in ("train", "tune"):
        path = step_out / f"{split}.parquet"
        if path.is_file():
            a.update(tuple(ids) for ids in pq.read_table(path).column("input_ids").to_pylist())
    return len(b) > 0 and all(tuple(ids) in a for ids in b)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, load average at start {load}"


def run(rows: int, naive_rows: int | None, keep: Path | None) -> dict:
    import pyarrow
    import tokenizers

    with tempfile.TemporaryDirectory(prefix="tokenize-bench-") as tmp_name:
        tmp = keep or Path(tmp_name)
        machine = _machine()
        started = time.perf_counter()
        dataset = make_synthetic(tmp / "dataset", rows)
        made = time.perf_counter() - started
        step = _run_child("step", dataset, tmp / "step-out", None)
        naive = _run_child("naive", dataset, tmp / "naive-out", naive_rows)
        same = _same_ids(tmp / "step-out", tmp / "naive-out")
        sizes = {
            "input_mb": sum(p.stat().st_size for p in dataset.glob("*.parquet")) / 2**20,
            "step_output_mb": sum(p.stat().st_size for p in (tmp / "step-out").glob("*.parquet")) / 2**20,
        }
    for r in (step, naive):
        r["texts_per_s"] = r["rows"] / r["seconds"]
        r["texts_per_cpu_s"] = r["rows"] / r["cpu_seconds"]
    total_rows = rows + 2_000
    naive["extrapolated_seconds"] = total_rows / naive["texts_per_s"]
    return {
        "load_average_after": ", ".join(f"{x:.1f}" for x in os.getloadavg()),
        "rows": rows,
        "total_rows": total_rows,
        "naive_rows": naive["rows"],
        "machine": machine,
        "versions": f"tokenizers {tokenizers.__version__}, pyarrow {pyarrow.__version__}",
        "synthetic_seconds": made,
        "same_ids": same,
        "step": step,
        "naive": naive,
        **sizes,
    }


def markdown(r: dict) -> str:
    s, n = r["step"], r["naive"]
    partial = r["naive_rows"] < r["total_rows"]
    naive_time = (
        f"{n['seconds']:.1f} s for {r['naive_rows']:,} rows "
        f"(~{n['extrapolated_seconds']:.0f} s for all, extrapolated)"
        if partial
        else f"{n['seconds']:.1f} s"
    )
    naive_rss = f"{n['peak_rss_mb']:,.0f} MB" + (
        f" (at {r['naive_rows']:,} rows, not comparable)" if partial else ""
    )
    return "\n".join(
        [
            f"Synthetic dataset: {r['rows']:,} train + 2,000 validation rows drawn from the emotion corpus's "
            f"word frequencies, text lengths and label shares ({r['input_mb']:.1f} MB parquet); model "
            f"`{MODEL}` tokenizer, max length {MAX_LENGTH}. Machine: {r['machine']}; {r['versions']}.",
            "Both run in the same `python benchmarks/tokenize_bench.py` invocation, each in its own process "
            "(peak RSS is that process's `ru_maxrss`). texts/s is rows over tokenize-and-write wall time, "
            "tokenizer loading excluded; texts per CPU-second divides by the process's CPU time instead "
            "(all threads), which a busy machine disturbs less. "
            f"Load average after: {r['load_average_after']}.",
            "",
            "| contender | rows | tokenize + write | texts/s | texts per CPU-s | peak RSS | process wall |",
            "|---|---|---|---|---|---|---|",
            f"| naive: pandas column, one tokenizer call per row, `to_parquet` | {r['naive_rows']:,} "
            f"| {naive_time} | {n['texts_per_s']:,.0f} | {n['texts_per_cpu_s']:,.0f} | {naive_rss} "
            f"| {n['wall_seconds']:.1f} s |",
            f"| step: Arrow batches, one fast-tokenizer call per batch, parquet row groups "
            f"| {r['total_rows']:,} | {s['seconds']:.1f} s | {s['texts_per_s']:,.0f} "
            f"| {s['texts_per_cpu_s']:,.0f} | {s['peak_rss_mb']:,.0f} MB | {s['wall_seconds']:.1f} s |",
            "",
            f"Speed-up: **{s['texts_per_s'] / n['texts_per_s']:.1f}x** texts/s "
            f"({s['texts_per_cpu_s'] / n['texts_per_cpu_s']:.1f}x per CPU-second); the step's peak RSS stays "
            f"{'under' if s['peak_rss_mb'] < 1536 else 'OVER'} the 1.5 GB budget. Token ids identical to the "
            f"baseline's on the first rows (up to 2,000): {'yes' if r['same_ids'] else 'NO'}. "
            "The step's output: "
            f"{r['step_output_mb']:.1f} MB of zstd parquet.",
        ]
    )


def update_docs(text: str, path: Path = DOCS) -> None:
    doc = path.read_text()
    pattern = re.compile(rf"({re.escape(SECTION)}\n)(.*?)(?=\n## |\Z)", re.S)
    if not pattern.search(doc):
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n"
    doc = pattern.sub(lambda m: m.group(1) + "\n" + text + "\n", doc, count=1)
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500_000, help="synthetic train rows")
    parser.add_argument(
        "--naive-rows", type=int, default=None, help="run the naive baseline on the first N rows"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument("--update-docs", action="store_true", help=f"write the table into {DOCS.name}")
    parser.add_argument("--keep", type=Path, default=None, help="keep the synthetic data and outputs here")
    parser.add_argument("--child", choices=["step", "naive"], help=argparse.SUPPRESS)
    parser.add_argument("--dataset", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        sys.path.insert(0, str(ROOT))
        result = (
            child_step(args.dataset, args.out)
            if args.child == "step"
            else child_naive(args.dataset, args.out, args.naive_rows)
        )
        print(json.dumps(result))
        return

    result = run(args.rows, args.naive_rows, args.keep)
    table = markdown(result)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.update_docs:
        update_docs(table)
        print(f"\nwritten to {DOCS}")


if __name__ == "__main__":
    main()
