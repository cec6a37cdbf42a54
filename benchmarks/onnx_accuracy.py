"""Accuracy and speed of the serving backends (torch, onnx, onnx-int8-static, onnx-int8) on validation.

onnx-int8-static is calibrated on 512 texts of the train split, as register builds it.

Runs each backend of `serving.backends` over the validation split (2,000 rows) in batches of
`--batch-size` texts (as the micro-batcher would), then prints accuracy, macro-F1, the change
against torch, agreement with torch's predictions and throughput (texts/s, `--threads` intra-op
threads). `--alone` also scores every text on its own (batch of one), which shows how much a
backend's answer depends on the other texts in its batch (dynamic int8 quantization picks one
activation scale per batch).

    python benchmarks/onnx_accuracy.py --model-uri models:/emotion-classifier/2   # MLFLOW_TRACKING_URI set
    python benchmarks/onnx_accuracy.py --model-dir path/to/model_dir --backends onnx onnx-int8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATASET_DIR = Path(os.environ.get("EMOTION_DATASET_DIR", ROOT.parent / "shared" / "data" / "emotion"))
BACKENDS = ("torch", "onnx", "onnx-int8-static", "onnx-int8")


def resolve_model_dir(args: argparse.Namespace, cache_dir: Path) -> tuple[Path, str]:
    """The model directory to score, and how it was named (a path or the MLflow URI and version)."""
    if args.model_dir:
        return Path(args.model_dir), str(args.model_dir)
    from serving.model_loader import resolve_model

    resolved = resolve_model(args.model_uri, cache_dir, os.environ.get("MLFLOW_TRACKING_URI"))
    return resolved.model_dir, f"{resolved.model_uri} (version {resolved.model_version})"


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> float:
    scores = []
    for label in range(n_labels):
        tp = np.sum((y_pred == label) & (y_true == label))
        fp = np.sum((y_pred == label) & (y_true != label))
        fn = np.sum((y_pred != label) & (y_true == label))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def score(backend, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    """Probabilities for all texts in batches of `batch_size` (in the given order), and texts/s."""
    backend.predict_proba(texts[:batch_size])  # warm-up
    started = time.perf_counter()
    probs = np.concatenate(
        [backend.predict_proba(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    )
    return probs, len(texts) / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict:
    import pandas as pd

    from serving.backends import load_backend, set_threads

    set_threads(args.threads)  # torch; onnxruntime gets the same number per session
    df = pd.read_parquet(DATASET_DIR / "validation.parquet")
    if args.limit:
        df = df.head(args.limit)
    texts, y_true = df["text"].tolist(), df["label"].to_numpy()
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = Path(args.cache_dir) if args.cache_dir else Path(tmp)
        model_dir, model_name = resolve_model_dir(args, cache_dir)
        results: dict = {
            "model": model_name,
            "rows": len(texts),
            "batch_size": args.batch_size,
            "threads": args.threads,
            "load_average_at_start": os.getloadavg(),
            "backends": {},
        }
        reference = None
        for kind in args.backends:
            from serving.export import calibration_sample

            train = pd.read_parquet(DATASET_DIR / "train.parquet")["text"].astype(str).tolist()
            backend = load_backend(
                kind,
                model_dir,
                args.max_tokens,
                cache_dir=cache_dir,
                threads=args.threads,
                calibration_texts=calibration_sample(train),
            )
            n_labels = len(backend.labels)
            probs, rate = score(backend, texts, args.batch_size)
            pred = probs.argmax(axis=1)
            row = {
                "accuracy": float(np.mean(pred == y_true)),
                "macro_f1": macro_f1(y_true, pred, n_labels),
                "texts_per_s": rate,
            }
            if reference is None and kind == "torch":
                reference = (probs, pred)
            if reference is not None:
                row["agreement_with_torch"] = float(np.mean(pred == reference[1]))
                row["max_prob_diff_vs_torch"] = float(np.abs(probs - reference[0]).max())
            if args.alone:
                alone, alone_rate = score(backend, texts, 1)
                row["alone_accuracy"] = float(np.mean(alone.argmax(axis=1) == y_true))
                row["alone_texts_per_s"] = alone_rate
                row["alone_vs_batched_flips"] = int(np.sum(alone.argmax(axis=1) != pred))
                row["alone_vs_batched_max_prob_diff"] = float(np.abs(alone - probs).max())
            results["backends"][kind] = row
            print(kind, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
            del backend
    results["load_average_at_end"] = os.getloadavg()
    return results


def markdown(results: dict) -> str:
    backends = results["backends"]
    base = backends.get("torch")
    alone = any("alone_accuracy" in r for r in backends.values())
    head = "| backend | accuracy | macro-F1 | accuracy change vs torch | agrees with torch | texts/s |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if alone:
        head += " batch-of-1 accuracy | batched vs alone: flipped / max prob diff |"
        rule += "---:|---:|"
    lines = [head, rule]
    for kind, r in backends.items():
        change = f"{100 * (r['accuracy'] - base['accuracy']):+.2f} pt" if base else "n/a"
        agree = f"{100 * r['agreement_with_torch']:.2f}%" if "agreement_with_torch" in r else "n/a"
        line = (
            f"| {kind} | {100 * r['accuracy']:.2f}% | {100 * r['macro_f1']:.2f}% | {change} | {agree} "
            f"| {r['texts_per_s']:.0f} |"
        )
        if alone:
            line += (
                f" {100 * r['alone_accuracy']:.2f}% | {r['alone_vs_batched_flips']} / "
                f"{r['alone_vs_batched_max_prob_diff']:.4f} |"
            )
        lines.append(line)
    lines.append("")
    lines.append(
        f"{results['model']}; {results['rows']} validation rows in batches of {results['batch_size']}, "
        f"{results['threads']} intra-op thread(s); load average {results['load_average_at_start']} at the "
        f"start, {results['load_average_at_end']} at the end."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="a project-format model directory")
    source.add_argument("--model-uri", help="models:/<name>/<version>, models:/<name>@<alias> or runs:/...")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (serving default)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (serving default: 1)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--limit", type=int, default=0, help="only the first N validation rows")
    parser.add_argument("--alone", action="store_true", help="also score each text in a batch of one")
    parser.add_argument("--cache-dir", help="download/ONNX cache (default: a temporary directory)")
    parser.add_argument("--json-out", help="also write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))
    results = run(args)
    print(markdown(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
