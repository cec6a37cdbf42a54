"""Open Inference Protocol v2 (KServe / Triton REST): request parsing and response encoding.

One input, a BYTES tensor of texts (any name; shape [n] or [n, 1]); two outputs: `label` (BYTES,
[n]) and `probabilities` (FP32, [n, labels]). Both the JSON form and Triton's binary-tensor
extension (`Inference-Header-Content-Length`: a JSON header followed by raw tensors; BYTES
elements as a 4-byte little-endian length + the UTF-8 bytes) are read and written, so
`tritonclient` works in its default binary mode as well as in JSON mode. Errors are
`{"error": "..."}` with 400 (bad request) or 404 (unknown model / output).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

HEADER_LENGTH = "inference-header-content-length"
OUTPUT_LABEL = "label"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUTS = (OUTPUT_LABEL, OUTPUT_PROBABILITIES)
INPUT_NAME = "text"
EXTENSIONS = ["binary_tensor_data"]


class V2Error(Exception):
    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass
class InferRequest:
    id: str | None
    texts: list[str]
    outputs: list[tuple[str, bool]]  # (name, binary)


def model_metadata(name: str, versions: list[str], n_labels: int, platform: str) -> dict[str, Any]:
    return {
        "name": name,
        "versions": versions,
        "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": OUTPUT_LABEL, "datatype": "BYTES", "shape": [-1]},
            {"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, n_labels]},
        ],
    }


def _decode_bytes_tensor(raw: bytes, count: int, where: str) -> list[bytes]:
    out, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise V2Error(400, f"{where}: truncated BYTES element length at byte {pos}")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise V2Error(400, f"{where}: BYTES element of {size} bytes runs past the tensor data")
        out.append(raw[pos : pos + size])
        pos += size
    if len(out) != count:
        raise V2Error(400, f"{where}: shape says {count} elements, binary data holds {len(out)}")
    return out


def _as_text(value: Any, where: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise V2Error(400, f"{where} is not valid UTF-8") from None
    if isinstance(value, str):
        return value
    raise V2Error(400, f"{where} must be a string, got {type(value).__name__}")


def _element_count(shape: Any, where: str) -> int:
    if not isinstance(shape, list) or not shape or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise V2Error(400, f"{where}.shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise V2Error(400, f"{where}.shape must be [n] or [n, 1] (one text per row), got {shape}")
    return shape[0]


def _flatten(data: Any) -> list[Any]:
    if isinstance(data, list) and any(isinstance(d, list) for d in data):
        return [x for d in data for x in (d if isinstance(d, list) else [d])]
    return data if isinstance(data, list) else [data]


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """The texts and requested outputs of an infer request (JSON or binary-tensor form)."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise V2Error(
                400, f"Inference-Header-Content-Length {header_length!r} is not a length within the body"
            )
        json_part, binary = body[: int(header_length)], body[int(header_length) :]
    else:
        json_part, binary = body, b""
    try:
        request = json.loads(json_part)
    except (ValueError, UnicodeDecodeError) as exc:
        raise V2Error(400, f"request header is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise V2Error(400, "request must be a JSON object with 'inputs'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise V2Error(400, f"'inputs' must hold exactly one tensor (BYTES texts, e.g. named {INPUT_NAME!r})")
    tensor = inputs[0]
    where = f"input {tensor.get('name', '?')!r}"
    if tensor.get("datatype") != "BYTES":
        raise V2Error(400, f"{where}: datatype must be BYTES, got {tensor.get('datatype')!r}")
    count = _element_count(tensor.get("shape"), where)
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error(400, f"{where}.parameters must be an object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size < 0 or size > len(binary):
            raise V2Error(400, f"{where}: binary_data_size {size!r} exceeds the binary data sent")
        values: list[Any] = _decode_bytes_tensor(binary[:size], count, where)
    else:
        if "data" not in tensor:
            raise V2Error(400, f"{where} has neither 'data' nor parameters.binary_data_size")
        values = _flatten(tensor["data"])
        if len(values) != count:
            raise V2Error(400, f"{where}: shape says {count} elements, data holds {len(values)}")
    texts = [_as_text(v, f"{where}[{i}]") for i, v in enumerate(values)]
    req_params = request.get("parameters") or {}
    default_binary = (
        bool(req_params.get("binary_data_output", False)) if isinstance(req_params, dict) else False
    )
    outputs: list[tuple[str, bool]] = []
    requested = request.get("outputs")
    if requested is None:
        outputs = [(name, default_binary) for name in OUTPUTS]
    else:
        if not isinstance(requested, list):
            raise V2Error(400, "'outputs' must be a list")
        for out in requested:
            name = out.get("name") if isinstance(out, dict) else None
            if name not in OUTPUTS:
                raise V2Error(400, f"unknown output {name!r}; available: {', '.join(OUTPUTS)}")
            out_params = out.get("parameters") or {}
            outputs.append((name, bool(out_params.get("binary_data", default_binary))))
    request_id = request.get("id")
    return InferRequest(id=str(request_id) if request_id is not None else None, texts=texts, outputs=outputs)


def _encode_bytes(values: list[str]) -> bytes:
    parts = []
    for v in values:
        raw = v.encode("utf-8")
        parts.append(struct.pack("<I", len(raw)) + raw)
    return b"".join(parts)


def encode_infer_response(
    request: InferRequest, model_name: str, model_version: str, probs: np.ndarray, labels: dict[int, str]
) -> tuple[bytes, dict[str, str]]:
    """Response body and headers: plain JSON, or JSON header + binary tensors when any output is binary."""
    names = [labels[i] for i in sorted(labels)]
    label_values = [names[int(i)] for i in probs.argmax(axis=1)]
    probs32 = np.ascontiguousarray(probs, dtype=np.float32)
    n = len(request.texts)
    outputs, blobs = [], []
    for name, binary in request.outputs:
        if name == OUTPUT_LABEL:
            entry = {"name": name, "datatype": "BYTES", "shape": [n]}
            raw, data = (_encode_bytes(label_values), label_values)
        else:
            entry = {"name": name, "datatype": "FP32", "shape": [n, probs32.shape[1]]}
            raw, data = (probs32.tobytes(), [round(float(x), 7) for x in probs32.ravel()])
        if binary:
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = data
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
