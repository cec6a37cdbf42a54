"""ONNX Runtime backend: the model directory exported to ONNX once, optionally int8-quantized.

`onnx` runs the exported fp32 graph; `onnx-int8` runs it after dynamic int8 quantization
(`onnxruntime.quantization.quantize_dynamic`: per-channel QInt8 weights, activations quantized
per forward pass).

The export is cached under `<cache_dir>/onnx/<key>.onnx`, where the key is a content hash of
`model.safetensors` + `config.json` + the backend kind (+ an export format version), so a new model
version never reuses a stale graph and an unchanged one is exported only once. Each file is written
to a temporary sibling and renamed into place, so concurrent workers (gunicorn) never see a
half-written graph; an advisory lock keeps them from doing the same export twice. The weights come
from safetensors and the graph is protobuf: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ONNX_KINDS = ("onnx", "onnx-int8")
OPSET = 17
EXPORT_FORMAT_VERSION = "1"  # bump when the export/quantization recipe changes
_HASHED_FILES = ("model.safetensors", "config.json")


def cache_key(model_dir: Path, kind: str) -> str:
    """Content hash of the weights and config plus the backend kind: the cached graph's name."""
    digest = hashlib.sha256(f"{kind}\0opset{OPSET}\0v{EXPORT_FORMAT_VERSION}\0".encode())
    for name in _HASHED_FILES:
        path = Path(model_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: an ONNX export needs {' + '.join(_HASHED_FILES)}")
        digest.update(name.encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


@contextlib.contextmanager
def _export_lock(path: Path) -> Iterator[None]:
    """Advisory lock next to `path` so concurrent workers export once (the rename alone keeps it safe)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic renames still keep the cache consistent
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomically(target: Path, write) -> Path:
    """Call `write(tmp_path)` on a temporary sibling of `target`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".onnx.tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)
    return target


def export_onnx(model_dir: Path, out_path: Path) -> None:
    """Export the safetensors model in `model_dir` to an fp32 ONNX graph (logits output).

    Inputs are the tokenizer's own (`input_ids`, `attention_mask`, and `token_type_ids` only when the
    tokenizer produces them), with dynamic batch and sequence axes.
    """
    import torch

    from shared.model_package import load_model_dir

    model, tokenizer, _ = load_model_dir(model_dir)
    sample = tokenizer(
        ["a short sample text", "a somewhat longer sample text for the export"],
        padding="longest",
        return_tensors="pt",
    )
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]

    class _Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(names, tensors, strict=True))).logits

    # The tracer warns about shape checks it freezes (padding of the mask, causal flag): both are
    # constant for an encoder with a full attention mask; the tests compare outputs with torch.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits().eval(),
            tuple(sample[n] for n in names),
            str(out_path),
            input_names=names,
            output_names=["logits"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(fp32_path: Path, out_path: Path) -> None:
    """Dynamic int8 quantization of an fp32 graph.

    Weights: QInt8, one scale per output channel (per-tensor scales cost the trained MiniLM 1.5
    points of validation accuracy; per-channel ones cost nothing). Only matmuls with a constant
    (weight) operand are quantized: the attention score matmuls stay fp32, which is also faster.
    Activations get one scale per forward pass, so a text's scores move slightly with the other
    texts in its batch (measured in docs/benchmarks.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_path),
        str(out_path),
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"MatMulConstBOnly": True},
    )


def ensure_onnx_model(model_dir: Path, kind: str, cache_dir: Path) -> Path:
    """The cached ONNX graph for `model_dir` and `kind`, exported (and quantized) if not there yet."""
    if kind not in ONNX_KINDS:
        raise ValueError(f"unknown ONNX backend {kind!r}; available: {', '.join(ONNX_KINDS)}")
    root = Path(cache_dir) / "onnx"
    target = root / f"{cache_key(model_dir, kind)}.onnx"
    if target.is_file():
        log.info("ONNX cache hit: %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    with _export_lock(target):
        if target.is_file():  # another worker finished it while we waited
            return target
        if kind == "onnx":
            log.info("exporting %s to ONNX (%s)", model_dir, target)
            _write_atomically(target, lambda tmp: export_onnx(model_dir, tmp))
        else:
            fp32 = ensure_onnx_model(model_dir, "onnx", cache_dir)
            log.info("quantizing %s to int8 (%s)", fp32, target)
            _write_atomically(target, lambda tmp: quantize_int8(fp32, tmp))
    return target


def session_options(threads: int):
    """Intra-op threads as configured (0: onnxruntime's default), one inter-op thread, all optimizations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    return opts


class OnnxBackend:
    """The model directory run by ONNX Runtime on CPU (fp32 or dynamically int8-quantized)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        kind: str = "onnx",
        cache_dir: Path,
        max_tokens: int = 128,
        threads: int = 1,
    ) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        from shared.model_package import read_labels, read_temperature

        model_dir = Path(model_dir)
        self.kind = kind
        self.labels = read_labels(model_dir)
        self.temperature = read_temperature(model_dir)  # calibration (temperature.json; 1.0 without)
        self.max_tokens = max_tokens
        self.model_path = ensure_onnx_model(model_dir, kind, cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.session = ort.InferenceSession(
            str(self.model_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.labels):
            raise ValueError(f"model has {n_out} outputs but labels.json names {len(self.labels)} labels")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(
            texts, padding="longest", truncation=True, max_length=self.max_tokens, return_tensors="np"
        )
        feeds = {name: np.asarray(enc[name], dtype=np.int64) for name in self.input_names}
        (logits,) = self.session.run(["logits"], feeds)
        logits = logits.astype(np.float32, copy=False) / np.float32(self.temperature)
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)
