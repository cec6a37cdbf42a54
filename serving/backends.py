"""Inference backends: turn a list of texts into class probabilities, padded to the longest text.

`torch` runs the safetensors model with PyTorch; `onnx`, `onnx-int8-static` and `onnx-int8` run it
as an ONNX graph (fp32, static int8, dynamic int8) with ONNX Runtime (`serving.onnx_backend`).
Each has `prepare` (tokenize; the batcher's tokenizer thread) and `infer` (forward pass + softmax;
its inference thread), `predict_proba` (both) and `labels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    labels: dict[int, str]

    def prepare(self, texts: list[str]) -> Any:
        """Model inputs for `texts` (tokenized, padded to the longest)."""
        ...

    def infer(self, prepared: Any) -> np.ndarray:
        """Probabilities, shape (len(texts), len(labels)), rows in input order."""
        ...

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """`infer(prepare(texts))`."""
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
        from serving.model_loader import read_temperature
        from shared.model_package import load_model_dir

        self.model, self.tokenizer, self.labels = load_model_dir(model_dir)
        self.temperature = read_temperature(model_dir)  # calibration (temperature.json; 1.0 without)
        self.max_tokens = max_tokens
        n_out = int(self.model.config.num_labels)
        if n_out != len(self.labels):
            raise ValueError(f"model has {n_out} outputs but labels.json names {len(self.labels)} labels")

    def prepare(self, texts: list[str]):
        return self.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )

    def infer(self, enc) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(**enc).logits
            return torch.softmax(logits.float() / self.temperature, dim=-1).numpy()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.infer(self.prepare(texts))


BACKENDS = ("torch", "onnx", "onnx-int8-static", "onnx-int8")


def load_backend(
    kind: str,
    model_dir: Path,
    max_tokens: int,
    *,
    cache_dir: Path | None = None,
    threads: int = 1,
    onnx_path: Path | None = None,
    calibration_texts: list[str] | None = None,
) -> Backend:
    """Build the configured backend for a model directory.

    The ONNX backends run `onnx_path` (a prebuilt serving artifact) when given, else the graph
    exported into `cache_dir` (`calibration_texts` calibrate a static int8 export), with `threads`
    intra-op threads (0: onnxruntime's default); torch's threads are set in the inference thread.
    """
    if kind == "torch":
        return TorchBackend(model_dir, max_tokens=max_tokens)
    if kind in ("onnx", "onnx-int8", "onnx-int8-static"):
        from serving.onnx_backend import OnnxBackend

        if cache_dir is None and onnx_path is None:
            raise ValueError(f"backend {kind!r} needs a cache_dir for its exported ONNX graph")
        return OnnxBackend(
            model_dir,
            kind=kind,
            cache_dir=cache_dir or Path(onnx_path).parent,
            max_tokens=max_tokens,
            threads=threads,
            onnx_path=onnx_path,
            calibration_texts=calibration_texts,
        )
    raise ValueError(f"unknown backend {kind!r}; available: {', '.join(BACKENDS)}")
