"""The served model's lifecycle: loading -> ready (after a warm-up inference) or failed (with a reason).

Nothing is served until the whole chain (resolve URI, download, load weights, start the batcher,
warm-up inference with sane output) has succeeded; a failure at any point leaves the state
`failed` with the reason, which /ready reports and the log records.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from serving.backends import Backend, load_backend, set_threads
from serving.batching import MicroBatcher
from serving.export import find_serving_artifact
from serving.metrics import ServingMetrics
from serving.model_loader import (
    ResolvedModel,
    describe,
    fetch_serving_artifact,
    read_calibration_texts,
    resolve_model,
)
from serving.settings import ServeSettings

log = logging.getLogger(__name__)

WARMUP_TEXTS = (
    "i feel wonderful today",
    "i have been feeling rather anxious about the exam tomorrow and i cannot sleep at all tonight",
)


def freeze_heap() -> None:
    """Move everything loaded so far (libraries, model, tokenizer) out of the garbage collector's view.

    The server's heap is mostly long-lived objects; a full collection walks all of them while holding
    the GIL, stalling the event loop and the inference thread alike (a tail-latency spike). After
    `gc.freeze()` collections only visit what requests allocate.
    """
    gc.collect()
    gc.freeze()


class NeedsTorch(RuntimeError):
    """The model can only be served by exporting or running it with torch, which is not installed."""


@dataclass
class ModelRuntime:
    settings: ServeSettings
    metrics: ServingMetrics
    tracking_uri: str | None = None
    status: str = "loading"
    reason: str | None = "model is loading"
    resolved: ResolvedModel | None = None
    backend: Backend | None = None
    batcher: MicroBatcher | None = None
    info: dict[str, Any] = field(default_factory=dict)
    backend_kind: str = ""
    artifact_source: str | None = None
    load_seconds: float = 0.0

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def labels(self) -> dict[int, str]:
        return self.backend.labels if self.backend is not None else {}

    async def load(self) -> None:
        """Load and warm up the model; never raises (a failure is recorded as the state)."""
        try:
            started = time.perf_counter()
            resolved, backend = await asyncio.to_thread(self._load_blocking)
            self.load_seconds = time.perf_counter() - started
            st = self.settings
            batcher = MicroBatcher(
                backend.prepare,
                backend.infer,
                max_batch_size=st.max_batch_size,
                max_wait_ms=st.max_wait_ms,
                max_queued_texts=st.max_queued_texts,
                deadline_ms=st.deadline_ms,
                retry_after_s=st.retry_after_s,
                length_ratio=st.length_ratio,
                loop_niceness=st.loop_niceness,
                on_batch=self.metrics.observe_batch,
                on_shed=self.metrics.observe_shed,
                on_queue_depth=self.metrics.queue_depth.set,
                thread_initializer=(
                    partial(set_threads, self.settings.threads) if self.settings.backend == "torch" else None
                ),
            )
            batcher.start()
            self.batcher = batcher
            await self._warm_up(batcher, len(backend.labels))
            batcher.reset_rate()  # admission paces itself on real traffic, not on the first slow passes
            freeze_heap()
        except asyncio.CancelledError:
            await self.close()
            raise
        except Exception as exc:  # any failure: not ready, with the reason
            self.status, self.reason = "failed", f"model failed to load: {exc.__class__.__name__}: {exc}"
            log.error("%s (model_uri=%s)", self.reason, self.settings.model_uri)
            await self.close()
            return
        self.resolved, self.backend = resolved, backend
        self.info = describe(resolved, backend.labels) | {
            "backend": self.backend_kind,
            "serving_artifact": self.artifact_source,
            "load_seconds": round(self.load_seconds, 3),
        }
        self.metrics.set_model(resolved.model_uri, resolved.model_version, resolved.run_id, self.backend_kind)
        self.status, self.reason = "ready", None
        log.info(
            "serving %s (version %s) from %s", resolved.model_uri, resolved.model_version, resolved.model_dir
        )

    def _load_blocking(self) -> tuple[ResolvedModel, Backend]:
        st = self.settings
        resolved = resolve_model(st.model_uri, st.cache_dir, self.tracking_uri)
        kind, onnx_path, calibration = st.backend, None, None
        if kind != "torch":
            artifact_dir = fetch_serving_artifact(resolved, st.cache_dir, self.tracking_uri)
            onnx_path = find_serving_artifact(artifact_dir, resolved.model_dir, kind)
            self.artifact_source = str(artifact_dir) if onnx_path else "exported at start-up"
            if onnx_path is None and kind == "onnx-int8-static":
                calibration = read_calibration_texts(st.calibration_texts)
                if not calibration:
                    log.warning(
                        "no serving artifact and no SERVE_CALIBRATION_TEXTS for a static int8 export: "
                        "serving the exact fp32 onnx graph instead"
                    )
                    kind = "onnx"
        if (kind == "torch" or onnx_path is None) and importlib.util.find_spec("torch") is None:
            raise NeedsTorch(
                f"{st.model_uri} has no serving artifact (model version tag serving_artifact_uri) and this "
                "image has no torch to export one: register the model again (register builds the "
                "artifact) or serve it with the train image (emotion-hpo-train)"
                if kind != "torch"
                else "SERVE_BACKEND=torch needs torch, which this image does not have: use an onnx backend"
            )
        self.backend_kind = kind
        backend = load_backend(
            kind,
            resolved.model_dir,
            st.max_tokens,
            cache_dir=st.cache_dir,
            threads=st.threads,
            onnx_path=onnx_path,
            calibration_texts=calibration,
        )
        return resolved, backend

    @staticmethod
    async def _warm_up(batcher: MicroBatcher, n_labels: int) -> None:
        for texts in ([WARMUP_TEXTS[0]], list(WARMUP_TEXTS)):
            probs = await batcher.predict(texts)
            if probs.shape != (len(texts), n_labels) or not np.all(np.isfinite(probs)):
                raise RuntimeError(
                    f"warm-up inference returned {probs.shape} values, expected ({len(texts)}, {n_labels})"
                )

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
            self.batcher = None
        if self.status == "ready":
            self.status, self.reason = "loading", "server is shutting down"
        self.metrics.ready.set(0)


def build_predictions(
    texts: list[str],
    probs: np.ndarray,
    labels: dict[int, str],
    *,
    top_k: int | None,
    all_scores: bool,
    truncated: list[bool] | None,
) -> list[dict[str, Any]]:
    """One prediction dict per text: the top emotion, its confidence and optional scores/flags."""
    names = [labels[i] for i in sorted(labels)]
    k = len(names) if all_scores else top_k
    order = np.argsort(-probs, axis=1)
    out = []
    for row, (text, p) in enumerate(zip(texts, probs, strict=True)):
        best = int(order[row, 0])
        pred: dict[str, Any] = {"text": text, "emotion": names[best], "confidence": round(float(p[best]), 6)}
        if k:
            pred["scores"] = {names[int(j)]: round(float(p[j]), 6) for j in order[row, :k]}
        if truncated is not None:
            pred["truncated"] = truncated[row]
        out.append(pred)
    return out
