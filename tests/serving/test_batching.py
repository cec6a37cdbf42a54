"""Micro-batching: concurrent calls share forward passes, answers go back to their callers."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time

import numpy as np
import pytest

from serving.batching import BatcherClosed, ClientGone, MicroBatcher


class RecordingModel:
    """Fake model: row i is [len(text_i), i-th text's number]; records batch sizes and threads."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[int] = set()
        self.delay = delay
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> np.ndarray:
        import time

        self.batches.append(list(texts))
        self.threads.add(threading.get_ident())
        if self.fail_on in texts:
            raise RuntimeError("boom")
        time.sleep(self.delay)
        return np.array([[len(t), float(t.split("-")[-1])] for t in texts])


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    model = RecordingModel(delay=0.02)

    async def scenario():
        batcher = MicroBatcher(list, model, max_batch_size=8, max_wait_ms=20)
        batcher.start()
        requests = [[f"t-{i}"] for i in range(20)] + [[f"x-{i}" for i in range(100, 103)]]
        results = await asyncio.gather(*(batcher.predict(r) for r in requests))
        await batcher.stop()
        return requests, results

    requests, results = run(scenario())
    for texts, probs in zip(requests, results, strict=True):
        assert probs[:, 1].tolist() == [float(t.split("-")[-1]) for t in texts]
    sizes = [len(b) for b in model.batches]
    assert sum(sizes) == 23 and max(sizes) <= 8
    assert len(model.batches) < 21  # grouped, not one pass per request
    assert threading.get_ident() not in model.threads  # inference ran off the event loop thread


def test_a_request_larger_than_a_batch_is_split_into_batches():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(list, model, max_batch_size=4, max_wait_ms=0)
        batcher.start()
        out = await batcher.predict([f"t-{i}" for i in range(10)])
        await batcher.stop()
        return out

    out = run(scenario())
    assert out[:, 1].tolist() == list(range(10))
    assert [len(b) for b in model.batches] == [4, 4, 2]


def test_a_full_batch_runs_without_waiting_for_the_deadline():
    model = RecordingModel()

    async def scenario():
        batcher = MicroBatcher(list, model, max_batch_size=32, max_wait_ms=600_000)
        batcher.start()
        # with a 10-minute collection window, only a full batch can finish within the timeout
        out = await asyncio.wait_for(batcher.predict([f"t-{i}" for i in range(32)]), timeout=60)
        await batcher.stop()
        return out

    assert run(scenario()).shape == (32, 2)
    assert [len(b) for b in model.batches] == [32]


def test_a_lone_request_is_dispatched_at_once_when_nothing_computes():
    model = RecordingModel()

    async def scenario():
        # a 10-minute collection window: only dispatching without waiting for company can finish
        batcher = MicroBatcher(list, model, max_batch_size=32, max_wait_ms=600_000)
        batcher.start()
        out = await asyncio.wait_for(batcher.predict(["t-1"]), timeout=60)
        await batcher.stop()
        return out

    assert run(scenario())[:, 1].tolist() == [1.0]
    assert model.batches == [["t-1"]]


class HeldModel:
    """Records each batch; the batch ["t-0"] computes until `release` is set. Scores: [len, index]."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def infer(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if texts == ["t-0"]:
            self.release.wait(30)
        return np.array([[len(t), float(t.split("-")[-1])] for t in texts])

    async def start(self) -> tuple[MicroBatcher, asyncio.Future]:
        """A batcher whose first request, "t-0", is computing (held) when this returns."""
        batcher = MicroBatcher(list, self.infer, max_batch_size=8, max_wait_ms=0)
        batcher.start()
        first = asyncio.ensure_future(batcher.predict(["t-0"]))
        while not self.batches:
            await asyncio.sleep(0.01)
        return batcher, first


def test_requests_arriving_while_a_batch_computes_are_collected_into_the_next_batch():
    model = HeldModel()

    async def scenario():
        batcher, first = await model.start()
        rest = [asyncio.ensure_future(batcher.predict([f"t-{i}"])) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        model.release.set()
        out = await asyncio.gather(first, *rest)
        await batcher.stop()
        return out

    out = run(scenario())
    assert [o[0, 1] for o in out] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert model.batches == [["t-0"], [f"t-{i}" for i in range(1, 6)]]


def test_a_queued_request_whose_client_went_away_is_dropped_not_computed():
    model = HeldModel()
    gone = {"t-2": False}

    async def scenario():
        batcher, first = await model.start()
        second = asyncio.ensure_future(batcher.predict(["t-1"]))  # takes the pipeline's second slot
        await asyncio.sleep(0.05)
        dropped = asyncio.ensure_future(batcher.predict(["t-2"], lambda: gone["t-2"]))
        kept = asyncio.ensure_future(batcher.predict(["t-3"], lambda: False))
        await asyncio.sleep(0.05)
        gone["t-2"] = True  # its client disconnects while it waits in the queue
        model.release.set()
        out = await asyncio.gather(first, second, dropped, kept, return_exceptions=True)
        await batcher.stop()
        return out

    first, second, dropped, kept = run(scenario())
    assert isinstance(dropped, ClientGone)
    assert [first[0, 1], second[0, 1], kept[0, 1]] == [0.0, 1.0, 3.0]
    assert all("t-2" not in batch for batch in model.batches)


def test_a_failing_batch_fails_its_callers_and_the_batcher_keeps_serving():
    model = RecordingModel(fail_on="bad-1")

    async def scenario():
        batcher = MicroBatcher(list, model, max_batch_size=8, max_wait_ms=0)
        batcher.start()
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.predict(["bad-1"])
        ok = await batcher.predict(["good-2"])
        await batcher.stop()
        return ok

    assert run(scenario())[0, 1] == 2.0


def test_stopped_batcher_refuses_and_fails_queued_requests():
    model = RecordingModel(delay=0.2)

    async def scenario():
        batcher = MicroBatcher(list, model, max_batch_size=1, max_wait_ms=0)
        batcher.start()
        first = asyncio.create_task(batcher.predict(["a-1"]))
        queued = asyncio.create_task(batcher.predict(["b-2"]))
        await asyncio.sleep(0.05)
        await batcher.stop()
        results = await asyncio.gather(first, queued, return_exceptions=True)
        with pytest.raises(BatcherClosed):
            await batcher.predict(["c-3"])
        return results

    results = run(scenario())
    assert all(isinstance(r, BatcherClosed) for r in results)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are a Linux feature")
def test_the_event_loop_runs_at_a_lower_priority_than_inference_and_is_restored_on_stop():
    seen: dict[str, int] = {}

    def infer(texts: list[str]) -> np.ndarray:
        seen["inference"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return np.zeros((len(texts), 2))

    def in_thread() -> None:  # a thread of its own: the test runner's priority is never touched
        async def scenario():
            loop_tid = threading.get_native_id()
            seen["before"] = os.getpriority(os.PRIO_PROCESS, loop_tid)
            batcher = MicroBatcher(list, infer, loop_niceness=3)
            batcher.start()
            seen["loop"] = os.getpriority(os.PRIO_PROCESS, loop_tid)
            await batcher.predict(["a"])
            await batcher.stop()
            seen["after"] = os.getpriority(os.PRIO_PROCESS, loop_tid)

        asyncio.run(scenario())

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(60)
    assert seen["loop"] == min(19, seen["before"] + 3)
    assert seen["inference"] == seen["before"]  # inference keeps the normal priority
    if os.geteuid() == 0:  # raising a priority back needs CAP_SYS_NICE
        assert seen["after"] == seen["before"]


def test_the_pace_is_seconds_per_text_weighted_by_texts_not_an_average_over_batches():
    """A one-text pass and a nine-text pass of 0.1 s each: 0.2 s for 10 texts is ~0.02 s per text
    (decayed sums); averaging each batch's per-text cost would say ~0.09 and refuse far too early."""

    def infer(texts: list[str]) -> np.ndarray:
        time.sleep(0.1)
        return np.zeros((len(texts), 2))

    async def scenario():
        batcher = MicroBatcher(list, infer, max_batch_size=16, max_wait_ms=0)
        batcher.start()
        await batcher.predict(["t-0"])
        await batcher.predict([f"t-{i}" for i in range(1, 10)])
        await batcher.stop()
        return batcher.seconds_per_text

    pace = run(scenario())
    assert 0.015 <= pace <= 0.04, pace
