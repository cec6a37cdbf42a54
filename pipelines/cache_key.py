"""Memoization keys for the dvc-fetch and tokenize tasks, computed by the workflow's first task.

Argo's memoization cache only accepts keys matching ``^[a-zA-Z0-9][-a-zA-Z0-9]*$``, so parameter
values such as ``emotion-v1.0.0`` or a model id with ``/`` cannot go into a key verbatim, and
expression tags (``{{=sprig...}}``) in memoize keys are unreliable on Argo and unsupported by the
local runner. This task hashes each step's inputs into a key-safe string instead:

    python -m pipelines.cache_key --registry-url URL --data-version V --data-path P --model M \
        --max-length N --limit N --eval-limit N --seed S --image-tag T --result-dir DIR

writes ``DIR/dvc-fetch`` and ``DIR/tokenize`` (plus ``result.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

from shared.results import write_result

# bump to invalidate every cached output (e.g. when an output format changes);
# v2: the tokenize output gained the tune split (tune.parquet), which hpo requires
KEY_VERSION = "v2"
# The flags this task takes: workflow parameters of the same names (the workflow passes each one).
INPUTS = (
    "registry-url",
    "data-version",
    "data-path",
    "model",
    "max-length",
    "limit",
    "eval-limit",
    "seed",
    "image-tag",
)


class CacheKeys(BaseModel):
    dvc_fetch: str
    tokenize: str


def _digest(prefix: str, values: dict[str, str]) -> str:
    text = json.dumps({"version": KEY_VERSION, **values}, sort_keys=True)
    return f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:40]}"


def cache_keys(
    *,
    registry_url: str,
    data_version: str,
    data_path: str,
    model: str,
    max_length: str,
    limit: str,
    eval_limit: str,
    seed: str,
    image_tag: str,
) -> CacheKeys:
    """Keys that change whenever anything the step's output depends on changes (code via image tag)."""
    fetch = {
        "registry_url": registry_url,
        "data_version": data_version,
        "data_path": data_path,
        "image_tag": image_tag,
    }
    tokenize = {
        **fetch,
        "model": model,
        "max_length": max_length,
        "limit": limit,
        "eval_limit": eval_limit,
        "seed": seed,
    }
    return CacheKeys(dvc_fetch=_digest("dvc-fetch", fetch), tokenize=_digest("tokenize", tokenize))


def main(argv: list[str] | None = None) -> CacheKeys:
    parser = argparse.ArgumentParser(prog="python -m pipelines.cache_key", description=__doc__.split("\n")[0])
    for flag in INPUTS:
        parser.add_argument(f"--{flag}", required=True)
    parser.add_argument("--result-dir", type=Path, required=True)
    args = vars(parser.parse_args(argv))
    result_dir = args.pop("result_dir")
    keys = cache_keys(**args)
    write_result(keys, result_dir / "result.json", params_dir=result_dir)
    print(keys.model_dump_json())
    return keys


if __name__ == "__main__":
    main()
