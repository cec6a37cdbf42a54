"""tokenize-to-parquet step: every split tokenized once into parquet, in bounded memory."""

from steps.tokenize.contract import TokenizeInput, TokenizeResult
from steps.tokenize.core import tokenize

__all__ = ["TokenizeInput", "TokenizeResult", "tokenize"]
