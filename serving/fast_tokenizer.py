"""The model's fast tokenizer run by `tokenizers` alone: the serving image has no transformers.

A model directory saved by transformers holds `tokenizer.json` (the whole pipeline: normalizer,
pre-tokenizer, model, special-token post-processor) and `tokenizer_config.json` (the pad token).
`FastTokenizer(model_dir, max_tokens)(texts)` returns the same `input_ids`, `attention_mask` and
`token_type_ids` as transformers' `tokenizer(texts, padding="longest", truncation=True,
max_length=max_tokens)` (tests/serving/test_fast_tokenizer.py compares them).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


class MissingTokenizer(ValueError):
    """The model directory has no tokenizer.json (a slow-only tokenizer cannot be served)."""


class FastTokenizer:
    def __init__(self, model_dir: Path, max_tokens: int) -> None:
        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise MissingTokenizer(f"{model_dir} has no tokenizer.json: save the model with a fast tokenizer")
        self._tokenizer = Tokenizer.from_file(str(path))
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        pad = config.get("pad_token") or "[PAD]"
        pad = pad.get("content", "[PAD]") if isinstance(pad, dict) else str(pad)
        pad_id = self._tokenizer.token_to_id(pad)
        if pad_id is None:
            raise MissingTokenizer(f"{model_dir}: the pad token {pad!r} is not in the vocabulary")
        self._tokenizer.enable_truncation(max_length=max_tokens)
        self._tokenizer.enable_padding(pad_id=pad_id, pad_token=pad)  # to the longest text of a batch

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self._tokenizer.encode_batch(texts)
        return {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in encodings], dtype=np.int64),
        }
