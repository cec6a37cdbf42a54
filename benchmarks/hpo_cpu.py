"""HPO benchmark on CPU: samples/s per trial with torch threads matched to the trial's CPUs.

Runs, on the same tokenized slice and in the same process run:
  1. baseline A: the HF Trainer alone (one process, torch's default threads = all cores);
  2. baseline B: a search whose trials each use torch threads = all cores (no matching, so
     packed trials oversubscribe the cores);
  3. ours: the same search with torch threads = the trial's CPUs (the hpo step's default).
Searches use a fixed configuration (constant learning rate and batch size, no early stopping),
so every trial does the same work and only the threading differs.

  python benchmarks/hpo_cpu.py                        # MiniLM, 1,000 train rows, 2 trials x 1 CPU
  python benchmarks/hpo_cpu.py --tokenized-dir DIR --model TINY_DIR --limit 200   # quick check
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hpo_gpu import data_arguments, ensure_tokenized, search, trainer_baseline

FIXED_SPACE = """\
learning_rate: {distribution: constant, value: 5.0e-5}
batch_size: {distribution: constant, value: %d}
"""


def main() -> None:
    p = data_arguments(__doc__, limit=1000, eval_limit=300)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--cpus-per-trial", type=float, default=1)
    p.add_argument("--trials", type=int, default=0, help="default: as many as fit at once")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()

    cores = os.cpu_count() or 1
    trials = args.trials or max(1, int(cores // args.cpus_per_trial))
    args.gpus_per_trial, args.ray_num_cpus = 0.0, cores
    report: dict = {"machine": f"CPU x{cores}", "model": args.model, "trials": trials}
    with tempfile.TemporaryDirectory(prefix="hpo-cpu-bench-") as tmp:
        work = Path(tmp)
        tokenized = ensure_tokenized(args, work)
        limit = args.limit if args.tokenized_dir else 0
        space = work / "fixed.yaml"
        space.write_text(FIXED_SPACE % args.batch_size)
        args.search_space = space
        report["trainer"] = trainer_baseline(tokenized, args.model, args.epochs, args.batch_size, limit)
        print("baseline A, HF Trainer:", json.dumps(report["trainer"]), flush=True)
        runs = (("unmatched", cores), ("matched", None))
        for name, threads in runs:
            report[name] = search(
                tokenized, args, trials, args.epochs, work, torch_threads=threads, search_alg="random"
            )
            print(f"search, {name} threads:", json.dumps(report[name]), flush=True)

    per_trial = max(1, int(args.cpus_per_trial))
    print(f"\nHPO CPU benchmark on {report['machine']}, model {args.model}, {trials} trials x "
          f"{args.cpus_per_trial:g} CPU, batch {args.batch_size}, {args.epochs} epoch(s)")  # fmt: skip
    print(f"{'run':52} {'per-trial samples/s':>20} {'all trials samples/s':>21} {'wall s':>8}")
    t = report["trainer"]
    print(f"{'A: HF Trainer alone, torch threads = ' + str(cores):52} {t['samples_per_second']:20.1f} "
          f"{t['samples_per_second']:21.1f} {t['wall_s']:8.1f}")  # fmt: skip
    for name, label in (("unmatched", f"B: search, torch threads = {cores} per trial"),
                        ("matched", f"ours: search, torch threads = {per_trial} per trial")):  # fmt: skip
        r = report[name]
        print(f"{label:52} {r['samples_per_second_per_trial']:20.1f} "
              f"{r['samples_per_second_per_trial'] * trials:21.1f} {r['wall_s']:8.1f}")  # fmt: skip
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
