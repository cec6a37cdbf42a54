"""The serving image tokenizes with `tokenizers` alone: the same ids as transformers' tokenizer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.fast_tokenizer import FastTokenizer, MissingTokenizer

HOSTILE = ["", " ", "a", "😀" * 40, "ÀÉÎõü ß 中文 " * 30, "word " * 500, "\x00\t\n"]


@pytest.mark.parametrize("max_tokens", [8, 64, 128])
def test_same_feeds_as_transformers_on_the_natural_mix_and_hostile_texts(
    tiny_model_dir, dataset_dir, max_tokens
):
    from transformers import AutoTokenizer

    texts = pd.read_parquet(dataset_dir / "validation.parquet")["text"].tolist() + HOSTILE
    reference = AutoTokenizer.from_pretrained(tiny_model_dir)
    ours = FastTokenizer(tiny_model_dir, max_tokens)
    for start in range(0, len(texts), 16):  # batches pad to their own longest text
        batch = texts[start : start + 16]
        want = reference(
            batch, padding="longest", truncation=True, max_length=max_tokens, return_tensors="np"
        )
        got = ours(batch)
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            assert got[name].dtype == np.int64
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{name} of batch at {start}")


def test_a_model_without_tokenizer_json_is_refused_in_one_line(tmp_path):
    with pytest.raises(MissingTokenizer, match="no tokenizer.json"):
        FastTokenizer(tmp_path, 64)
