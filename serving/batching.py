"""Dynamic micro-batching with admission on deadlines counted from arrival, and length-bucketed batches.

Requests put their texts on a queue and await a future. The queue buckets texts by length
(serving.length_queue): a batch is taken from the bucket whose head waited longest, so it holds texts
of similar length (little padding) instead of a FIFO slice of the whole length mix. A collector task
on the event loop takes a batch whenever one of two pipeline slots is free: when nothing is
computing it dispatches at once (a lone request never waits for company); while a batch computes it
waits up to `max_wait_ms` for the queue to hold `max_batch_size` texts. Each batch is tokenized in a
*preparation* thread and run in an *inference* thread: the next batch is tokenized while this one
computes, and neither ever runs on the event loop.

Overload: every request has a deadline, `deadline_ms` after it *arrived* (the HTTP protocol's
timestamp when the server provides one, else when the app saw it). A request is admitted only if,
at the measured pace (seconds per unit of text, `text_units`: how long recent batches held the
pipeline over the units they held, so the bound shrinks by itself when the CPU is contended), the
work ahead of it plus its own would end within `ADMISSION_SHARE` of its deadline; otherwise it is
refused at once with `Overloaded` (503 + Retry-After) instead of queueing. At most
`max_queued_texts` texts wait at once. A queued request whose batch would, at the pace, end after its
deadline (after `ANSWER_SHARE` of it while other batches compute) fails with `DeadlineExceeded`
(503) before anything is computed for it, instead of getting a late answer. Scores are exact per
text (the backends are batch-invariant), so how texts are grouped never changes an answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serving.length_queue import LengthQueue, text_units

log = logging.getLogger(__name__)

PrepareFn = Callable[[list[str]], Any]
InferFn = Callable[[Any], np.ndarray]
BatchObserver = Callable[[int, float], None]

# Admission admits a request while the work ahead of it plus its own, at the measured pace, would end
# within this share of its deadline (counted from its arrival); the rest is the pace's error margin
# and the response's way back through the event loop.
ADMISSION_SHARE = 0.8
# While other batches compute, a queued request whose batch would, at the measured pace, end after
# this share of its deadline fails before anything is computed for it: the rest is the answer's way
# back through an event loop and cores shared with that work (alone, it keeps its whole deadline).
ANSWER_SHARE = 0.9


class BatcherClosed(RuntimeError):
    """The batcher is stopped (server shutting down)."""


class Overloaded(RuntimeError):
    """Admitting the request would exceed the queue bound: answer 503 with Retry-After at once."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(RuntimeError):
    """The request waited longer than its deadline before its batch could start."""


class ClientGone(RuntimeError):
    """The request's client disconnected before its batch started: nothing was computed for it."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    arrived: float  # loop time
    deadline: float
    probs: np.ndarray | None = None
    remaining: int = 0
    failed: bool = field(default=False)
    client_gone: Callable[[], bool] | None = None

    def abandoned(self) -> bool:
        """The caller stopped waiting, or its client disconnected."""
        return self.future.done() or (self.client_gone is not None and self.client_gone())


class MicroBatcher:
    """Group concurrent `predict` calls into batches of similar lengths, tokenized during the previous."""

    def __init__(
        self,
        prepare_fn: PrepareFn,
        infer_fn: InferFn,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        max_queued_texts: int = 0,
        deadline_ms: float = 0.0,
        retry_after_s: float = 1.0,
        length_ratio: float = 1.1,
        on_batch: BatchObserver | None = None,
        on_shed: Callable[[str], None] | None = None,
        on_queue_depth: Callable[[int], None] | None = None,
        thread_initializer: Callable[[], None] | None = None,
        loop_niceness: int = 0,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._prepare_fn = prepare_fn
        self._infer_fn = infer_fn
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queued_texts = max_queued_texts  # 0: unbounded
        self.deadline_s = deadline_ms / 1000.0  # 0: none
        self.retry_after_s = retry_after_s
        self.length_ratio = length_ratio
        self._on_batch = on_batch
        self._on_shed = on_shed
        self._on_queue_depth = on_queue_depth
        self._thread_initializer = thread_initializer
        self.loop_niceness = loop_niceness
        self._loop_priority: tuple[int, int] | None = None  # (thread id, its priority before start)
        self._queue = LengthQueue(length_ratio)
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._prepare_pool: ThreadPoolExecutor | None = None
        self._infer_pool: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()
        self._inflight_units = 0  # units of the texts collected, being tokenized or computed
        self._inflight_texts = 0
        self.seconds_per_unit = 0.0  # the pipeline's pace per text unit (see _run_group)
        self._held_sum = self._units_sum = self._texts_sum = 0.0
        self._last_done = 0.0  # perf_counter of the last batch's completion

    @property
    def typical_units(self) -> float:
        """Units of an average recent text (what the door assumes before a request's body is read)."""
        return self._units_sum / self._texts_sum if self._texts_sum else float(text_units("x" * 90))

    def work_ahead_s(self) -> float:
        """Seconds of work queued and computing, at the measured pace."""
        return (self._queue.units + self._inflight_units) * self.seconds_per_unit

    def admits(self, texts: int = 1, units: float | None = None, age_s: float = 0.0) -> bool:
        """Whether a request of `texts` texts worth `units` (default: typical texts) that arrived `age_s`
        seconds ago fits: under the queue bound and, at the measured pace, done within its deadline's share.

        An empty queue always admits (a request is never refused for its own size alone).
        """
        queue = self._queue
        if not queue.texts:
            return True
        if self.max_queued_texts and queue.texts + texts > self.max_queued_texts:
            return False
        units = texts * self.typical_units if units is None else units
        if not self.deadline_s:
            return True
        done_in = age_s + self.work_ahead_s() + units * self.seconds_per_unit
        return done_in <= ADMISSION_SHARE * self.deadline_s

    @property
    def queued_texts(self) -> int:
        return self._queue.texts

    @property
    def seconds_per_text(self) -> float:
        """The pace per typical text (for logs and messages)."""
        return self.seconds_per_unit * self.typical_units

    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(2)  # one batch computing, the next one being tokenized
        self._prepare_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        self._infer_pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="inference", initializer=self._thread_initializer
        )
        self._task = asyncio.get_running_loop().create_task(self._collect_forever(), name="micro-batcher")
        if self.loop_niceness:
            self._lower_loop_priority()

    def _lower_loop_priority(self) -> None:
        """Give the event-loop thread a lower CPU priority than the tokenize and inference threads.

        Under a flood of requests that are refused (clients that resend at once after a 503), the
        event loop would otherwise take the cores from the inference it feeds, and the admitted
        requests would slow down with every refusal. Linux applies `setpriority` to one thread; the
        pool threads are started first so they keep the normal priority. The loop thread's priority
        is set (not lowered again on each start) and restored by `stop` where allowed. Best effort:
        elsewhere, or without the right, nothing changes.
        """
        for pool in (self._prepare_pool, self._infer_pool):
            pool.submit(int).result()  # start the pool's thread now, at the loop's current priority
        try:
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + self.loop_niceness))
            self._loop_priority = (tid, current)
        except (AttributeError, OSError) as exc:  # not Linux, or not allowed
            log.info("event loop priority left as it is: %s", exc)

    def _restore_loop_priority(self) -> None:
        if self._loop_priority is None:
            return
        tid, original = self._loop_priority
        self._loop_priority = None
        try:
            os.setpriority(os.PRIO_PROCESS, tid, original)
        except OSError:  # raising a priority again needs a privilege: the thread stays lowered
            log.info("event loop priority not restored (needs CAP_SYS_NICE)")

    def reset_rate(self) -> None:
        """Forget the measured pace (warm-up passes are slow and unrepresentative)."""
        self.seconds_per_unit = self._held_sum = self._units_sum = self._texts_sum = 0.0

    async def stop(self) -> None:
        """Stop collecting; requests still queued fail with BatcherClosed."""
        self._restore_loop_priority()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for task in list(self._running):
            task.cancel()
        for job, _, _ in self._queue.drain():
            self._fail(job, BatcherClosed("server is shutting down"))
        self._set_depth()
        for pool in (self._prepare_pool, self._infer_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._prepare_pool = self._infer_pool = None

    async def predict(
        self,
        texts: list[str],
        client_gone: Callable[[], bool] | None = None,
        arrived: float | None = None,
    ) -> np.ndarray:
        """Probabilities for `texts` (rows in order); raises Overloaded or DeadlineExceeded under overload.

        `arrived` (the event loop's clock) is when the request reached the server; its deadline counts
        from there (default: now). `client_gone` (optional) says whether the client has disconnected:
        such a request is dropped from the queue (ClientGone) instead of computed.
        """
        if self._task is None or self._wakeup is None:
            raise BatcherClosed("batcher is not running")
        loop = asyncio.get_running_loop()
        now = loop.time()
        arrived = now if arrived is None else min(arrived, now)
        units = sum(text_units(text) for text in texts)
        if not self.admits(len(texts), units, now - arrived):
            if self._on_shed is not None:
                self._on_shed("queue_full")
            raise Overloaded(
                f"server is at capacity ({self._queue.texts} texts queued, limit {self.max_queued_texts}, "
                f"about {1000 * self.work_ahead_s():.0f} ms of work); retry later",
                self.retry_after_s,
            )
        deadline = arrived + self.deadline_s if self.deadline_s else float("inf")
        job = _Job(
            list(texts),
            loop.create_future(),
            arrived,
            deadline,
            remaining=len(texts),
            client_gone=client_gone,
        )
        self._queue.push(job)
        self._set_depth()
        self._wakeup.set()
        try:
            return await job.future
        except DeadlineExceeded:
            if self._on_shed is not None:
                self._on_shed("deadline")
            raise

    def _set_depth(self) -> None:
        if self._on_queue_depth is not None:
            self._on_queue_depth(self._queue.texts)

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        job.failed = True
        if not job.future.done():
            job.future.set_exception(exc)

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue.texts:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._slots.acquire()  # wait here, not holding texts: the queue keeps filling meanwhile
            try:
                batch = await self._collect_batch(loop)
            except BaseException:
                self._slots.release()
                raise
            if not batch:
                self._slots.release()
                continue
            units = sum(text_units(text) for _, _, text in batch)
            self._inflight_units += units
            self._inflight_texts += len(batch)
            task = loop.create_task(self._run_batch(batch, units))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect_batch(self, loop) -> list[tuple[_Job, int, str]]:
        """Wait (at most `max_wait_ms`, and only while something computes) for a full batch, then take
        one batch of similar lengths; requests that are over fail first (gone, or past their deadline)."""
        started = loop.time()
        while self._inflight_texts and self._queue.texts < self.max_batch_size:
            remaining = started + self.max_wait_s - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        now = loop.time()
        self._drop_dead(now)
        batch = self._queue.take(self.max_batch_size)
        # the batch ends after what computes now and its own work: a request it would answer too close
        # to its deadline fails now, before anything is computed for it
        ends = now + (self._inflight_units + sum(text_units(t) for _, _, t in batch)) * self.seconds_per_unit
        share = ANSWER_SHARE if self._inflight_texts else 1.0
        kept = []
        for item in batch:
            job = item[0]
            if job.failed:
                continue
            if job.arrived + share * (job.deadline - job.arrived) < ends:
                self._fail(job, DeadlineExceeded("request would be answered too close to its deadline"))
                continue
            kept.append(item)
        self._set_depth()
        return kept

    def _drop_dead(self, now: float) -> None:
        def dead(job: _Job) -> bool:
            if job.failed:
                return True
            if job.abandoned():
                self._fail(job, ClientGone("client disconnected before its batch started"))
                return True
            if now > job.deadline:
                self._fail(job, DeadlineExceeded("request waited longer than its deadline"))
                return True
            return False

        for _ in self._queue.drop_heads(dead):
            pass

    async def _run_batch(self, batch: list[tuple[_Job, int, str]], units: int) -> None:
        try:
            await self._run_group(asyncio.get_running_loop(), batch)
        finally:
            self._slots.release()
            self._inflight_units -= units
            self._inflight_texts -= len(batch)

    def _timed_infer(self, feeds: Any) -> tuple[np.ndarray, float]:
        """The inference call and its duration, measured in the inference thread (the queue's pace)."""
        started = time.perf_counter()
        probs = self._infer_fn(feeds)
        return probs, time.perf_counter() - started

    async def _run_group(self, loop, group: list[tuple[_Job, int, str]]) -> None:
        for job, _, _ in group:
            if not job.failed and job.abandoned():
                self._fail(job, ClientGone("client disconnected before its batch started"))
        group = [item for item in group if not item[0].failed]
        if not group:
            return
        texts = [text for _, _, text in group]
        started = time.perf_counter()
        try:
            feeds = await loop.run_in_executor(self._prepare_pool, self._prepare_fn, texts)
            probs, infer_s = await loop.run_in_executor(self._infer_pool, self._timed_infer, feeds)
        except asyncio.CancelledError:
            for job, _, _ in group:
                self._fail(job, BatcherClosed("server is shutting down"))
            raise
        except Exception as exc:  # deliver the failure to every waiting request, keep serving
            log.exception("inference failed for a batch of %d texts", len(texts))
            for job, _, _ in group:
                self._fail(job, exc)
            return
        done = time.perf_counter()
        self._observe_pace(texts, started, done, infer_s)
        for row, (job, i, _) in enumerate(group):
            if job.failed or job.future.done():
                continue
            if job.probs is None:
                job.probs = np.empty((len(job.texts), probs.shape[1]), dtype=probs.dtype)
            job.probs[i] = probs[row]
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.probs)

    def _observe_pace(self, texts: list[str], started: float, done: float, infer_s: float) -> None:
        """The queue's pace: how long this batch held the pipeline, per unit of its texts.

        When it was already waiting as the previous batch finished, the hold is the gap between the two
        completions (inference plus every hand-off and wait for the CPU the event loop took); it is
        never less than the inference. Exponentially decayed sums over the recent batches, weighted by
        their units (a small batch costs more per unit; averaging per batch would overstate the pace).
        """
        held = done - max(started, self._last_done)
        self._last_done = done
        self._held_sum = 0.9 * self._held_sum + max(infer_s, held)
        self._units_sum = 0.9 * self._units_sum + sum(text_units(text) for text in texts)
        self._texts_sum = 0.9 * self._texts_sum + len(texts)
        self.seconds_per_unit = self._held_sum / self._units_sum
        if self._on_batch is not None:
            self._on_batch(len(texts), done - started)
