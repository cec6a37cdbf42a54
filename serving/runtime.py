"""The served model's lifecycle: loading -> ready (after a warm-up inference) or failed (with a reason).

Nothing is served until the whole chain (resolve URI, download, load weights, start the batcher,
warm-up inference with sane output) has succeeded; a failure at any point leaves the state
`failed` with the reason, which /ready reports and the log records.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from serving.backends import Backend, load_backend, set_threads
from serving.batching import MicroBatcher
from serving.metrics import ServingMetrics
from serving.model_loader import ResolvedModel, describe, resolve_model
from serving.settings import ServeSettings

log = logging.getLogger(__name__)

WARMUP_TEXTS = (
    "i feel wonderful today",
    "i have been feeling rather anxious about the exam tomorrow and i cannot sleep at all tonight",
)


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

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    @property
    def labels(self) -> dict[int, str]:
        return self.backend.labels if self.backend is not None else {}

    async def load(self) -> None:
        """Load and warm up the model; never raises (a failure is recorded as the state)."""
        try:
            resolved, backend = await asyncio.to_thread(self._load_blocking)
            batcher = MicroBatcher(
                backend.predict_proba,
                max_batch_size=self.settings.max_batch_size,
                max_wait_ms=self.settings.max_wait_ms,
                on_batch=self.metrics.observe_batch,
                thread_initializer=(
                    partial(set_threads, self.settings.threads) if self.settings.backend == "torch" else None
                ),
            )
            batcher.start()
            self.batcher = batcher
            await self._warm_up(batcher, len(backend.labels))
        except asyncio.CancelledError:
            await self.close()
            raise
        except Exception as exc:  # any failure: not ready, with the reason
            self.status, self.reason = "failed", f"model failed to load: {exc.__class__.__name__}: {exc}"
            log.error("%s (model_uri=%s)", self.reason, self.settings.model_uri)
            await self.close()
            return
        self.resolved, self.backend = resolved, backend
        self.info = describe(resolved, backend.labels) | {"backend": self.settings.backend}
        self.metrics.set_model(
            resolved.model_uri, resolved.model_version, resolved.run_id, self.settings.backend
        )
        self.status, self.reason = "ready", None
        log.info(
            "serving %s (version %s) from %s", resolved.model_uri, resolved.model_version, resolved.model_dir
        )

    def _load_blocking(self) -> tuple[ResolvedModel, Backend]:
        resolved = resolve_model(self.settings.model_uri, self.settings.cache_dir, self.tracking_uri)
        backend = load_backend(
            self.settings.backend,
            resolved.model_dir,
            self.settings.max_tokens,
            cache_dir=self.settings.cache_dir,
            threads=self.settings.threads,
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
