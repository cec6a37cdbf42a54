"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests put their texts on an asyncio queue and await a future. One collector task takes the
first waiting request, then keeps taking more until the batch holds `max_batch_size` texts or
`max_wait_ms` has passed since it started collecting, and hands the batch to a single worker
thread (inference never runs on the event loop). While that thread computes, new requests queue
up, so under load the next batch is already full when the thread is free again: throughput grows
with concurrency while a lone request waits at most `max_wait_ms`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

PredictFn = Callable[[list[str]], np.ndarray]
BatchObserver = Callable[[int, float], None]


class BatcherClosed(RuntimeError):
    """The batcher is stopped (server shutting down)."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future


class MicroBatcher:
    """Group concurrent `predict` calls into batches run by one worker thread."""

    def __init__(
        self,
        predict_fn: PredictFn,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        on_batch: BatchObserver | None = None,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._predict_fn = predict_fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._thread_initializer = thread_initializer
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="inference", initializer=self._thread_initializer
        )
        self._task = asyncio.get_running_loop().create_task(self._collect_forever(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop collecting; requests still queued fail with BatcherClosed."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(BatcherClosed("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def predict(self, texts: list[str]) -> np.ndarray:
        """Probabilities for `texts` (rows in order), computed in some batch with other requests."""
        if self._task is None or self._queue is None:
            raise BatcherClosed("batcher is not running")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(list(texts), future))
        return await future

    async def _collect_forever(self) -> None:
        carry: _Job | None = None
        jobs: list[_Job] = []
        try:
            while True:
                first = carry or await self._queue.get()
                carry, jobs = None, [first]
                carry = await self._collect_batch(jobs)
                jobs = [j for j in jobs if not j.future.done()]  # a client that went away
                if jobs:
                    await self._run_batch(jobs)
                jobs = []
        finally:  # cancelled (shutdown): nobody may wait forever
            for job in [*jobs, *([carry] if carry else [])]:
                if not job.future.done():
                    job.future.set_exception(BatcherClosed("server is shutting down"))

    async def _collect_batch(self, jobs: list[_Job]) -> _Job | None:
        """Append queued jobs to `jobs` until the batch is full or the wait is over.

        Returns the job that did not fit, which starts the next batch.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        size = sum(len(j.texts) for j in jobs)
        while size < self.max_batch_size:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(job.texts) > self.max_batch_size:
                return job
            jobs.append(job)
            size += len(job.texts)
        return None

    async def _run_batch(self, jobs: list[_Job]) -> None:
        texts = [t for job in jobs for t in job.texts]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            probs = await loop.run_in_executor(self._executor, self._predict_chunked, texts)
        except Exception as exc:  # deliver the failure to every waiting request, keep serving
            log.exception("inference failed for a batch of %d texts", len(texts))
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(texts), time.perf_counter() - started)
        offset = 0
        for job in jobs:
            n = len(job.texts)
            if not job.future.done():
                job.future.set_result(probs[offset : offset + n])
            offset += n

    def _predict_chunked(self, texts: list[str]) -> np.ndarray:
        """Run in the worker thread; one request larger than a batch is split into batches."""
        step = self.max_batch_size
        parts = [self._predict_fn(texts[i : i + step]) for i in range(0, len(texts), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
