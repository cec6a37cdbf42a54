"""HPO benchmark (GPU; runs on CPU with tiny settings): our search vs the Hugging Face Trainer.

In one run it measures, on the same tokenized data:
  1. baseline: the HF Trainer alone (3 epochs, batch 64, bf16 on CUDA), train samples/s, wall
     time and val accuracy;
  2. ours, one trial with the Trainer's settings (TrialTrainer in-process): samples/s;
  3. ours, each search in --searches (default 8x3 and 16x10: trials x max epochs) with ASHA and
     fractional GPUs per trial, end to end including Ray start: wall time, mean per-trial
     samples/s, best val accuracy.

GPU (the issue-4 figures; full 16k train split):
  python benchmarks/hpo_gpu.py --dataset-dir ../shared/data/emotion --gpus-per-trial 0.25 --cpus-per-trial 3
On the lent GPU machine (no ray/mlflow there): see benchmarks/gpu_carry.py and gpu_run.sh.
CPU smoke test (tiny):
  python benchmarks/hpo_gpu.py --tokenized-dir DIR --model TINY_MODEL_DIR --limit 200 \
      --searches 2x1 --trainer-epochs 1 --gpus-per-trial 0 --cpus-per-trial 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.model_package import DEFAULT_MODEL  # noqa: E402 - after the path is set

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def ensure_tokenized(args, work: Path) -> Path:
    """The tokenized dir to benchmark on: given, or made by the tokenize step's CLI."""
    if args.tokenized_dir:
        return Path(args.tokenized_dir)
    out = work / "tokenized"
    cmd = [
        sys.executable, "-m", "steps.tokenize", "--dataset-dir", str(args.dataset_dir), "--model", args.model,
        "--max-length", "128", "--limit", str(args.limit), "--eval-limit", str(args.eval_limit),
        "--seed", "0", "--output-dir", str(out), "--result-dir", str(work / "tokenize-result"),
    ]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out


def trainer_baseline(tokenized_dir: Path, model: str, epochs: int, batch_size: int, limit: int) -> dict:
    """The HF Trainer fine-tuning the same data: dynamic padding, bf16 on CUDA, eval each epoch."""
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from shared.model_package import resolve_model_reference
    from steps.hpo.data import load_tokenized

    data = load_tokenized(tokenized_dir, limit=limit)

    def rows(split):
        ids, offsets = split.ids, split.offsets
        return [
            {"input_ids": ids[offsets[i] : offsets[i + 1]].tolist(), "labels": int(split.labels[i])}
            for i in range(len(split))
        ]

    tokenizer = AutoTokenizer.from_pretrained(data.tokenizer_dir)
    torch.manual_seed(0)
    net = AutoModelForSequenceClassification.from_pretrained(
        resolve_model_reference(model), num_labels=len(data.labels), dtype=torch.float32
    )
    cuda = torch.cuda.is_available()

    def accuracy(pred):
        return {"accuracy": float((np.argmax(pred.predictions, axis=-1) == pred.label_ids).mean())}

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=net,
            args=TrainingArguments(
                output_dir=out,
                num_train_epochs=epochs,
                per_device_train_batch_size=batch_size,
                per_device_eval_batch_size=2 * batch_size,
                learning_rate=5e-5,
                bf16=cuda,
                eval_strategy="epoch",
                save_strategy="no",
                logging_strategy="no",
                report_to="none",
                seed=0,
            ),
            train_dataset=rows(data.train),
            eval_dataset=rows(data.validation),
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_metrics=accuracy,
        )
        start = time.perf_counter()
        metrics = trainer.train().metrics
        wall = time.perf_counter() - start
        acc = trainer.evaluate()["eval_accuracy"]
    return {
        "samples_per_second": metrics["train_samples_per_second"],
        "wall_s": wall,
        "val_accuracy": acc,
        "train_rows": len(data.train),
    }


def single_trial(tokenized_dir: Path, model: str, epochs: int, batch_size: int, limit: int) -> dict:
    """Our training loop alone with the Trainer's settings (one trial, no Ray)."""
    from shared.model_package import resolve_model_reference
    from steps.hpo.config import TrialParams
    from steps.hpo.data import load_tokenized
    from steps.hpo.train import TrialTrainer

    data = load_tokenized(tokenized_dir, limit=limit)
    start = time.perf_counter()
    trainer = TrialTrainer(
        data, TrialParams(learning_rate=5e-5, batch_size=batch_size), resolve_model_reference(model), epochs
    )
    epochs_run = list(trainer.epochs())
    wall = time.perf_counter() - start
    return {
        "samples_per_second": sum(m.samples_per_second for m in epochs_run) / len(epochs_run),
        "wall_s": wall,
        "val_accuracy": epochs_run[-1].val_accuracy,
    }


def search(tokenized_dir: Path, args, trials: int, epochs: int, work: Path, **overrides) -> dict:
    """One search end to end (Ray start included): wall, mean per-trial samples/s, best accuracy."""
    from mlflow.tracking import MlflowClient

    from shared.settings import Settings
    from steps.hpo.contract import HpoInput
    from steps.hpo.core import run_search

    tag = f"{trials}x{epochs}-{time.monotonic_ns()}"
    settings = Settings(
        mlflow_tracking_uri=args.tracking_uri or f"sqlite:///{work / 'mlflow.db'}",
        mlflow_experiment_name="hpo-benchmark",
    )
    inp = HpoInput(
        tokenized_dir=tokenized_dir,
        model=args.model,
        num_samples=trials,
        max_epochs=epochs,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        ray_num_cpus=args.ray_num_cpus,
        limit=args.limit if args.tokenized_dir else 0,
        storage_dir=work / f"tune-{tag}",
        search_space=overrides.pop("search_space", args.search_space),
        **overrides,
    )
    start = time.perf_counter()
    result = run_search(inp, settings)
    wall = time.perf_counter() - start
    client = MlflowClient(settings.mlflow_tracking_uri)
    children = client.search_runs(
        [result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.parent_run_id}'"
    )
    speeds = [c.data.metrics.get("samples_per_second") for c in children]
    speeds = [x for x in speeds if x is not None]
    epochs_run = sum(len(client.get_metric_history(c.info.run_id, "val_loss")) for c in children)
    return {
        "wall_s": wall,
        "samples_per_second_per_trial": sum(speeds) / max(1, len(speeds)),
        "best_val_accuracy": result.best_val_accuracy,
        "trial_epochs_run": epochs_run,
        "statuses": sorted(c.info.status for c in children),
    }


def data_arguments(doc: str | None, *, limit: int, eval_limit: int) -> argparse.ArgumentParser:
    """A parser with the data/model options the HPO benchmarks share."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenized-dir", help="tokenize step output (else made from --dataset-dir)")
    p.add_argument("--dataset-dir", default=str(ROOT.parent / "shared" / "data" / "emotion"))
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--limit", type=int, default=limit, help="cap training rows (0 = full split)")
    p.add_argument("--eval-limit", type=int, default=eval_limit, help="cap validation rows when tokenizing")
    return p


def main() -> None:
    p = data_arguments(__doc__, limit=0, eval_limit=0)
    p.add_argument("--trainer-epochs", type=int, default=3)
    p.add_argument("--trainer-batch-size", type=int, default=64)
    p.add_argument("--searches", default="8x3,16x10", help="comma list of TRIALSxMAX_EPOCHS")
    p.add_argument("--gpus-per-trial", type=float, default=0.25)
    p.add_argument("--cpus-per-trial", type=float, default=2)
    p.add_argument("--ray-num-cpus", type=int, default=None)
    p.add_argument("--search-space", type=Path, default=None, help="YAML (default: the packaged space)")
    p.add_argument("--skip-trainer", action="store_true")
    p.add_argument(
        "--tracking-uri", help="MLflow store (default: SQLite in a temp dir; mlflow-skinny needs file:///DIR)"
    )
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU x{os.cpu_count()}"
    report: dict = {"device": device, "model": args.model}

    def record(key: str, label: str, value: dict) -> None:
        """Keep and print a stage's figures, and save the report so far (a run cut short keeps them)."""
        report[key] = value
        print(f"{label}:", json.dumps(value), flush=True)
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=2))

    with tempfile.TemporaryDirectory(prefix="hpo-bench-") as tmp:
        work = Path(tmp)
        tokenized = ensure_tokenized(args, work)
        limit = args.limit if args.tokenized_dir else 0
        if not args.skip_trainer:
            record(
                "trainer",
                "baseline HF Trainer",
                trainer_baseline(tokenized, args.model, args.trainer_epochs, args.trainer_batch_size, limit),
            )
        record(
            "single_trial",
            "ours, single trial",
            single_trial(tokenized, args.model, args.trainer_epochs, args.trainer_batch_size, limit),
        )
        for spec in args.searches.split(","):
            trials, epochs = (int(x) for x in spec.lower().split("x"))
            record(f"search_{spec}", f"ours, search {spec}", search(tokenized, args, trials, epochs, work))

    print(f"\nHPO benchmark on {device}, model {args.model}")
    print(f"{'run':34} {'wall s':>8} {'samples/s':>12} {'best val acc':>13}")
    if "trainer" in report:
        t = report["trainer"]
        print(f"{'HF Trainer (baseline), ' + str(args.trainer_epochs) + ' ep':34} {t['wall_s']:8.1f} "
              f"{t['samples_per_second']:12.1f} {t['val_accuracy']:13.4f}")  # fmt: skip
    s = report["single_trial"]
    ratio = ""
    if "trainer" in report:
        ratio = f" ({s['samples_per_second'] / report['trainer']['samples_per_second']:.2f}x)"
    print(f"{'ours, single trial' + ratio:34} {s['wall_s']:8.1f} {s['samples_per_second']:12.1f} "
          f"{s['val_accuracy']:13.4f}")  # fmt: skip
    for spec in args.searches.split(","):
        r = report[f"search_{spec}"]
        print(f"{'ours, search ' + spec + ' ASHA (per trial)':34} {r['wall_s']:8.1f} "
              f"{r['samples_per_second_per_trial']:12.1f} {r['best_val_accuracy']:13.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
