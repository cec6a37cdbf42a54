"""tokenize-to-parquet step: every split tokenized once into parquet, in bounded memory."""

from steps.tokenize.core import TokenizeInput, TokenizeResult, tokenize

__all__ = ["TokenizeInput", "TokenizeResult", "tokenize"]
