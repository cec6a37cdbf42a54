"""Dynamic micro-batching with bounded admission, deadlines and length-aware batches.

Requests put their texts on a queue and await a future. A collector task on the event loop takes
the waiting requests: when nothing is computing it dispatches them at once (a lone request never
waits for company); while a batch computes it keeps collecting until the batch holds
`max_batch_size` texts or `max_wait_ms` has passed. The batch's texts are sorted by length and cut
into sub-batches wherever padding would waste too much (`length_ratio`), so short texts do not pay
for a long one's padding. Each sub-batch is tokenized in a *preparation* thread and run in an
*inference* thread: the next batch is tokenized while this one computes, and neither ever runs on
the event loop.

Overload: at most `max_queued_texts` texts wait at once, and no more work is admitted than the
batcher expects to finish within `deadline_ms` (texts waiting or computing x the measured
seconds per text: how long the recent batches held the pipeline over how many texts they held,
so the bound shrinks by itself when the CPU is contended; `ADMISSION_SHARE` of the deadline, leaving the rest
for the request's own batch). A request that would go past either bound is refused at once with
`Overloaded` (the app answers 503 + Retry-After) instead of queueing, and a request still waiting
`deadline_ms` after it arrived fails with `DeadlineExceeded` (503) instead of getting a late
answer. Scores are exact per text (the backends are batch-invariant), so how texts are grouped
never changes an answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PrepareFn = Callable[[list[str]], Any]
InferFn = Callable[[Any], np.ndarray]
BatchObserver = Callable[[int, float], None]

# Admission admits work ahead (waiting + computing, at the measured pace) up to this share of the
# deadline; the rest of the deadline is for the request's own batch and the event loop's hand-offs.
# Under a flood the queue sits at this bound, so admitted requests wait about this long: at 1.0 their
# p99 was ~460 ms against a 500 ms deadline, at 0.5 ~360 ms (docs/benchmarks.md). A smaller share
# used to tip a 64-client load into a refusal flood (each refusal fed more refusals); refusals are
# now answered in the HTTP protocol and refused connections are read again only after a pause
# (serving.door), so that feedback is gone.
ADMISSION_SHARE = 0.5


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
    deadline: float
    probs: np.ndarray | None = None
    remaining: int = 0
    failed: bool = field(default=False)
    client_gone: Callable[[], bool] | None = None

    def abandoned(self) -> bool:
        """The caller stopped waiting, or its client disconnected."""
        return self.future.done() or (self.client_gone is not None and self.client_gone())


class MicroBatcher:
    """Group concurrent `predict` calls into length-sorted batches, tokenized while the previous one runs."""

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
        length_ratio: float = 1.5,
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
        self._pending: deque[_Job] = deque()
        self._queued_texts = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._prepare_pool: ThreadPoolExecutor | None = None
        self._infer_pool: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task] = set()
        self._inflight_texts = 0  # collected, being tokenized or computed
        self.seconds_per_text = 0.0  # moving average of the pipeline's seconds per text (see _run_group)
        self._held_sum = self._texts_sum = 0.0
        self._last_done = 0.0  # perf_counter of the last group's completion

    def admits(self, n: int) -> bool:
        """Whether `n` more texts fit: under the queue bound and, by the measured rate, the deadline.

        An empty queue always admits (a request is never refused for its own size alone).
        """
        queued = self._queued_texts
        if not queued:
            return True
        if self.max_queued_texts and queued + n > self.max_queued_texts:
            return False
        ahead = queued + self._inflight_texts + n
        return not (self.deadline_s and ahead * self.seconds_per_text > ADMISSION_SHARE * self.deadline_s)

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    def start(self) -> None:
        """Start the collector on the running event loop."""
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(2)  # one sub-batch computing, the next one being tokenized
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
        """Forget the measured seconds per text (warm-up passes are slow and unrepresentative)."""
        self.seconds_per_text = self._held_sum = self._texts_sum = 0.0

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
        while self._pending:
            self._fail(self._pending.popleft(), BatcherClosed("server is shutting down"))
        self._set_depth(0)
        for pool in (self._prepare_pool, self._infer_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
        self._prepare_pool = self._infer_pool = None

    async def predict(self, texts: list[str], client_gone: Callable[[], bool] | None = None) -> np.ndarray:
        """Probabilities for `texts` (rows in order); raises Overloaded or DeadlineExceeded under overload.

        `client_gone` (optional) says whether the client has disconnected: such a request is dropped
        from the queue (ClientGone) instead of computed, so clients that give up cost nothing more.
        """
        if self._task is None or self._wakeup is None:
            raise BatcherClosed("batcher is not running")
        n = len(texts)
        if not self.admits(n):
            if self._on_shed is not None:
                self._on_shed("queue_full")
            raise Overloaded(
                f"server is at capacity ({self._queued_texts} texts queued, limit {self.max_queued_texts}, "
                f"about {1000 * (self._queued_texts + self._inflight_texts) * self.seconds_per_text:.0f} ms "
                "of work); retry later",
                self.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s if self.deadline_s else float("inf")
        job = _Job(list(texts), loop.create_future(), deadline, remaining=n, client_gone=client_gone)
        self._pending.append(job)
        self._set_depth(self._queued_texts + n)
        self._wakeup.set()
        try:
            return await job.future
        except DeadlineExceeded:
            if self._on_shed is not None:
                self._on_shed("deadline")
            raise

    def _set_depth(self, depth: int) -> None:
        self._queued_texts = depth
        if self._on_queue_depth is not None:
            self._on_queue_depth(depth)

    @staticmethod
    def _fail(job: _Job, exc: BaseException) -> None:
        job.failed = True
        if not job.future.done():
            job.future.set_exception(exc)

    async def _collect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._slots.acquire()  # wait here, not holding texts: the queue keeps filling meanwhile
            try:
                jobs = await self._collect_batch(loop)
            except BaseException:
                self._slots.release()
                raise
            if not jobs:
                self._slots.release()
                continue
            groups = self._length_groups(jobs)
            self._inflight_texts += sum(len(job.texts) for job in jobs)
            # the first group takes the slot already held; the others wait for theirs in order
            task = loop.create_task(self._run_groups(groups))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _collect_batch(self, loop) -> list[_Job]:
        """Take jobs off the queue until the batch is full or the wait is over; expired jobs fail."""
        jobs: list[_Job] = []
        size = 0
        started = loop.time()
        while True:
            while self._pending and size < self.max_batch_size:
                job = self._pending[0]
                if jobs and size + len(job.texts) > self.max_batch_size:
                    break
                self._pending.popleft()
                self._set_depth(self._queued_texts - len(job.texts))
                if job.abandoned():
                    self._fail(job, ClientGone("client disconnected before its batch started"))
                    continue
                if loop.time() > job.deadline:
                    self._fail(job, DeadlineExceeded("request waited longer than its deadline"))
                    continue
                jobs.append(job)
                size += len(job.texts)
            remaining = started + self.max_wait_s - loop.time()
            idle = not self._inflight_texts  # nothing computing: waiting for company only adds latency
            if size >= self.max_batch_size or remaining <= 0 or (self._pending and jobs) or (idle and jobs):
                return jobs
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return jobs

    def _length_groups(self, jobs: list[_Job]) -> list[list[tuple[_Job, int, str]]]:
        """Texts by length, cut where one is over `length_ratio` x the group's shortest (+16 chars)."""
        items = sorted(
            ((job, i, text) for job in jobs for i, text in enumerate(job.texts)), key=lambda it: len(it[2])
        )
        groups: list[list[tuple[_Job, int, str]]] = []
        current: list[tuple[_Job, int, str]] = []
        for item in items:
            if current and (
                len(current) >= self.max_batch_size
                or len(item[2]) > self.length_ratio * max(1, len(current[0][2])) + 16
            ):
                groups.append(current)
                current = []
            current.append(item)
        if current:
            groups.append(current)
        return groups

    async def _run_groups(self, groups: list[list[tuple[_Job, int, str]]]) -> None:
        loop = asyncio.get_running_loop()
        for k, group in enumerate(groups):
            try:
                if k:
                    await self._slots.acquire()
                try:
                    await self._run_group(loop, group)
                finally:
                    self._slots.release()
            finally:
                self._inflight_texts -= len(group)

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
        elapsed = done - started
        # The queue's pace: how long this group held the pipeline. When it was already waiting as the
        # previous group finished, that is the gap between the two completions (inference plus every
        # hand-off and wait for the CPU the event loop took); it is never less than the inference.
        held = done - max(started, self._last_done)
        self._last_done = done
        # seconds per text over the recent groups, weighted by their texts (a small group costs more
        # per text; averaging per group would overstate the pace): exponentially decayed sums
        self._held_sum = 0.9 * self._held_sum + max(infer_s, held)
        self._texts_sum = 0.9 * self._texts_sum + len(texts)
        self.seconds_per_text = self._held_sum / self._texts_sum
        if self._on_batch is not None:
            self._on_batch(len(texts), elapsed)
        for row, (job, i, _) in enumerate(group):
            if job.failed or job.future.done():
                continue
            if job.probs is None:
                job.probs = np.empty((len(job.texts), probs.shape[1]), dtype=probs.dtype)
            job.probs[i] = probs[row]
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.probs)
