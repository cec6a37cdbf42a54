"""Inference backends: turn a list of texts into class probabilities, padded to the longest text.

`torch` runs the safetensors model with PyTorch; `onnx` and `onnx-int8` run it exported to ONNX
(fp32, or dynamically int8-quantized) with ONNX Runtime (`serving.onnx_backend`). All are called
from the batcher's single worker thread and share `predict_proba` and `labels`.
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
        from shared.model_package import load_model_dir, read_temperature

        self.model, self.tokenizer, self.labels = load_model_dir(model_dir)
        self.temperature = read_temperature(model_dir)  # calibration (temperature.json; 1.0 without)
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
            return torch.softmax(logits.float() / self.temperature, dim=-1).numpy()


BACKENDS = ("torch", "onnx", "onnx-int8")


def load_backend(
    kind: str, model_dir: Path, max_tokens: int, *, cache_dir: Path | None = None, threads: int = 1
) -> Backend:
    """Build the configured backend for a model directory.

    The ONNX backends need `cache_dir` (their exported graphs are cached there) and run `threads`
    intra-op threads (0: onnxruntime's default); torch's threads are set in the inference thread.
    """
    if kind == "torch":
        return TorchBackend(model_dir, max_tokens=max_tokens)
    if kind in ("onnx", "onnx-int8"):
        from serving.onnx_backend import OnnxBackend

        if cache_dir is None:
            raise ValueError(f"backend {kind!r} needs a cache_dir for its exported ONNX graph")
        return OnnxBackend(model_dir, kind=kind, cache_dir=cache_dir, max_tokens=max_tokens, threads=threads)
    raise ValueError(f"unknown backend {kind!r}; available: {', '.join(BACKENDS)}")
