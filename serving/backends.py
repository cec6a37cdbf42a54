"""Inference backends: turn a list of texts into class probabilities, padded to the longest text.

`torch` runs the safetensors model with PyTorch, called from the batcher's single worker thread.
(An ONNX Runtime backend would plug in here behind the same `predict_proba`; it is not built yet.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Backend(Protocol):
    labels: dict[int, str]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), rows in input order."""
        ...


def set_threads(threads: int) -> None:
    """Size torch's intra-op pool for the calling thread (0 keeps the default: one per core).

    Called in the inference thread itself: the OpenMP pool size is a per-thread setting.
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)


class TorchBackend:
    """The model directory run by PyTorch in inference mode."""

    def __init__(self, model_dir: Path, max_tokens: int = 128) -> None:
        from shared.model_package import load_model_dir

        self.model, self.tokenizer, self.labels = load_model_dir(model_dir)
        self.max_tokens = max_tokens
        n_out = int(self.model.config.num_labels)
        if n_out != len(self.labels):
            raise ValueError(f"model has {n_out} outputs but labels.json names {len(self.labels)} labels")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        with torch.inference_mode():
            logits = self.model(**enc).logits
            return torch.softmax(logits.float(), dim=-1).numpy()


def load_backend(kind: str, model_dir: Path, max_tokens: int) -> Backend:
    """Build the configured backend for a model directory."""
    if kind == "torch":
        return TorchBackend(model_dir, max_tokens=max_tokens)
    raise ValueError(f"unknown backend {kind!r}; available: torch")
