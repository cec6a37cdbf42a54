"""ONNX Runtime backend: the model directory exported to ONNX once, optionally int8-quantized.

`onnx` runs the exported fp32 graph; `onnx-int8-static` (the default) runs it after static int8
quantization calibrated on training texts (`quantize_static`, QDQ: per-channel QInt8 weights, one
fixed activation scale per tensor), so a text's scores do not depend on its batch-mates;
`onnx-int8` runs it after dynamic int8 quantization (activation scales picked per forward pass:
faster to build, but batch-dependent, see docs/benchmarks.md).

A model registered with a prebuilt serving artifact (`serving.export`) is loaded from it; the
export below is the fall-back for models registered before that (built at start-up, cached).

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
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from serving.fast_tokenizer import FastTokenizer

log = logging.getLogger(__name__)

ONNX_KINDS = ("onnx", "onnx-int8", "onnx-int8-static")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
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
    with _EXPORT_LOCK, torch.no_grad(), warnings.catch_warnings():
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


# torch.onnx.export keeps global state (GLOBALS.in_onnx_export): two exports at once in one process
# (two register calls in threads, a server exporting while another model loads) must take turns.
_EXPORT_LOCK = threading.Lock()


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


def quantize_int8_static(
    fp32_path: Path, out_path: Path, tokenizer, calibration_texts: list[str], max_tokens: int = 128
) -> None:
    """Static int8 quantization (QDQ) of an fp32 graph, calibrated on `calibration_texts`.

    Same weight recipe as `quantize_int8` (per-channel QInt8, weight matmuls only); activation
    scales are fixed from the calibration texts' min/max, so every text is computed with the
    same scales whatever else is in its batch: batch-invariant, and exact to float rounding.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if not calibration_texts:
        raise ValueError("static int8 quantization needs calibration texts")
    chunks = [calibration_texts[i : i + 16] for i in range(0, len(calibration_texts), 16)]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._chunks = iter(chunks)

        def get_next(self):
            texts = next(self._chunks, None)
            return None if texts is None else tokenize(tokenizer, texts, ONNX_INPUTS)

    quantize_static(
        str(fp32_path),
        str(out_path),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"MatMulConstBOnly": True},
    )


def tokenize(tokenizer: FastTokenizer, texts: list[str], input_names) -> dict[str, np.ndarray]:
    """The graph's int64 feeds for `texts`, padded to the longest one."""
    enc = tokenizer(texts)
    return {name: enc[name] for name in input_names if name in enc}


def build_onnx(
    model_dir: Path,
    kind: str,
    out_path: Path,
    *,
    fp32_path: Path | None = None,
    calibration_texts: list[str] | None = None,
    max_tokens: int = 128,
) -> Path:
    """Write the `kind` graph of `model_dir` to `out_path` (atomically); `fp32_path` reuses an export."""
    if kind not in ONNX_KINDS:
        raise ValueError(f"unknown ONNX backend {kind!r}; available: {', '.join(ONNX_KINDS)}")
    if kind == "onnx":
        return _write_atomically(out_path, lambda tmp: export_onnx(model_dir, tmp))
    if fp32_path is None:
        with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp:
            fp32 = build_onnx(model_dir, "onnx", Path(tmp) / "fp32.onnx")
            return build_onnx(
                model_dir,
                kind,
                out_path,
                fp32_path=fp32,
                calibration_texts=calibration_texts,
                max_tokens=max_tokens,
            )
    if kind == "onnx-int8":
        return _write_atomically(out_path, lambda tmp: quantize_int8(fp32_path, tmp))
    tokenizer = FastTokenizer(model_dir, max_tokens)
    return _write_atomically(
        out_path,
        lambda tmp: quantize_int8_static(fp32_path, tmp, tokenizer, calibration_texts or [], max_tokens),
    )


def ensure_onnx_model(
    model_dir: Path, kind: str, cache_dir: Path, calibration_texts: list[str] | None = None
) -> Path:
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
        fp32 = None if kind == "onnx" else ensure_onnx_model(model_dir, "onnx", cache_dir)
        log.info("building the %s graph of %s (%s)", kind, model_dir, target)
        build_onnx(model_dir, kind, target, fp32_path=fp32, calibration_texts=calibration_texts)
    return target


def session_options(threads: int):
    """Intra-op threads as configured (0: onnxruntime's default), one inter-op thread, all optimizations.

    The intra-op threads do not spin while waiting for work: on a box where the event loop, the
    tokenizer thread and other workers share the cores, spinning threads steal the CPU they need.
    No memory pattern: it plans buffers per input shape, and every batch of texts has a new shape
    (batch size x longest text); without it a forward pass costs ~20% less CPU here
    (docs/benchmarks.md).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(0, threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_mem_pattern = False
    opts.log_severity_level = 3  # errors only
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities from logits, row by row (a calibration temperature divides the logits)."""
    logits = logits.astype(np.float32, copy=False) / np.float32(temperature)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


class OnnxBackend:
    """An ONNX graph of the model directory run by ONNX Runtime on CPU.

    `prepare` (tokenize) and `infer` (the graph + softmax) are separate so the batcher can
    tokenize the next batch while this one runs; `predict_proba` does both.
    """

    def __init__(
        self,
        model_dir: Path,
        *,
        kind: str = "onnx",
        cache_dir: Path,
        max_tokens: int = 128,
        threads: int = 1,
        onnx_path: Path | None = None,
        calibration_texts: list[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        from serving.model_loader import read_temperature
        from shared.model_package import read_labels

        model_dir = Path(model_dir)
        self.kind = kind
        self.labels = read_labels(model_dir)
        self.temperature = read_temperature(model_dir)  # calibration (temperature.json; 1.0 without)
        self.max_tokens = max_tokens
        self.model_path = onnx_path or ensure_onnx_model(model_dir, kind, cache_dir, calibration_texts)
        self.tokenizer = FastTokenizer(model_dir, max_tokens)
        self.session = ort.InferenceSession(
            str(self.model_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        n_out = self.session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(self.labels):
            raise ValueError(f"model has {n_out} outputs but labels.json names {len(self.labels)} labels")

    def prepare(self, texts: list[str]) -> dict[str, np.ndarray]:
        return tokenize(self.tokenizer, texts, self.input_names)

    def infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        (logits,) = self.session.run(["logits"], feeds)
        return softmax(logits, self.temperature)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.infer(self.prepare(texts))
