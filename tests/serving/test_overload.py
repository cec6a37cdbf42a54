"""Overload: bounded admission answers 503 + Retry-After at once, a missed deadline is a 503, never a late
answer or another error; the shed count and queue depth are metrics, summed across Gunicorn workers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import numpy as np
import pytest

from serving.app import create_app
from serving.batching import ADMISSION_SHARE, ANSWER_SHARE, DeadlineExceeded, MicroBatcher, Overloaded
from tests.conftest import ROOT
from tests.serving.conftest import make_settings, uvicorn_server


def slow_infer(delay: float):
    def infer(texts: list[str]) -> np.ndarray:
        time.sleep(delay)
        return np.full((len(texts), 2), 0.5)

    return infer


def test_admission_refuses_past_the_bound_at_once():
    shed: list[str] = []
    depths: list[int] = []

    async def scenario():
        batcher = MicroBatcher(
            list,
            slow_infer(0.2),
            max_batch_size=1,
            max_wait_ms=0,
            max_queued_texts=3,
            retry_after_s=2,
            on_shed=shed.append,
            on_queue_depth=depths.append,
        )
        batcher.start()
        results = await asyncio.gather(
            *(batcher.predict([f"t{i}"]) for i in range(12)), return_exceptions=True
        )
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, Overloaded)]
    served = [r for r in results if isinstance(r, np.ndarray)]
    assert len(refused) + len(served) == 12 and refused and served
    assert all(r.retry_after_s == 2 for r in refused)
    assert shed.count("queue_full") == len(refused)
    assert max(depths) <= 3 and depths[-1] == 0


def test_a_request_that_waited_past_its_deadline_fails_instead_of_answering_late():
    shed: list[str] = []

    async def scenario():
        batcher = MicroBatcher(
            list, slow_infer(0.15), max_batch_size=1, max_wait_ms=0, deadline_ms=100, on_shed=shed.append
        )
        batcher.start()
        results = await asyncio.gather(
            *(batcher.predict([f"t{i}"]) for i in range(6)), return_exceptions=True
        )
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert isinstance(results[0], np.ndarray)  # the first starts at once
    late = [r for r in results if isinstance(r, DeadlineExceeded)]
    assert late and all(isinstance(r, np.ndarray | DeadlineExceeded) for r in results)
    assert shed.count("deadline") == len(late)


def test_admission_also_refuses_more_work_than_the_deadline_allows_at_the_measured_rate():
    async def scenario():
        batcher = MicroBatcher(list, slow_infer(0.1), max_batch_size=1, max_wait_ms=0, deadline_ms=500)
        batcher.start()
        await batcher.predict(["warm-up"])  # measures ~0.1 s per text of this length
        results = await asyncio.gather(
            *(batcher.predict([f"t{i:06d}"]) for i in range(10)), return_exceptions=True
        )
        await batcher.stop()
        return batcher.seconds_per_text, results

    per_text, results = asyncio.run(scenario())
    assert per_text >= 0.09
    refused = [r for r in results if isinstance(r, Overloaded)]
    # admitted: while the work ahead plus its own ends within ADMISSION_SHARE x 0.5 s at ~0.1 s per text
    admitted = round(ADMISSION_SHARE * 0.5 / 0.1)
    assert 10 - admitted - 1 <= len(refused) <= 10 - admitted + 1
    assert all(isinstance(r, np.ndarray | Overloaded | DeadlineExceeded) for r in results)


def test_while_other_work_computes_a_request_due_in_its_deadlines_last_tenth_fails_and_alone_it_is_answered():
    """At ~0.2 s per text and a 1 s deadline: a request whose batch would end 0.95 s after its arrival
    fails before it is computed while another batch computes (the answer's way back shares the
    cores), and is answered when nothing else computes."""
    assert ANSWER_SHARE < 0.95

    async def scenario():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(list, slow_infer(0.2), max_batch_size=1, max_wait_ms=0, deadline_ms=1000)
        batcher.start()
        await batcher.predict(["t-warm"])  # measures ~0.2 s per text of this length
        busy = asyncio.ensure_future(batcher.predict(["t-busy"]))
        await asyncio.sleep(0.01)  # t-busy computing; the next batch would end ~0.4 s from now
        with pytest.raises(DeadlineExceeded):
            await batcher.predict(["t-late"], arrived=loop.time() - 0.55)
        await busy
        alone = await batcher.predict(["t-late"], arrived=loop.time() - 0.75)  # ends ~0.2 s from now
        await batcher.stop()
        return batcher.seconds_per_text, alone

    per_text, alone = asyncio.run(scenario())
    assert 0.19 <= per_text <= 0.23 and alone.shape == (1, 2)


def test_the_deadline_counts_from_arrival_and_admission_includes_the_time_already_waited():
    """With work queued, a request that arrived 0.45 s ago (0.5 s deadline) is refused; the same
    request arriving now is admitted; and it gets its answer, not a refusal, once the queue is empty."""
    release = threading.Event()

    def infer(texts: list[str]) -> np.ndarray:
        if texts == ["t-0"]:
            release.wait(30)
        return np.zeros((len(texts), 2))

    async def scenario():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(list, infer, max_batch_size=1, max_wait_ms=0, deadline_ms=500)
        batcher.start()
        running = [asyncio.ensure_future(batcher.predict([f"t-{i}"])) for i in range(3)]
        deadline = loop.time() + 30
        while batcher.queued_texts != 1:  # t-0 computing, t-1 in the second slot, t-2 waiting
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        late = batcher.predict(["t-late"], arrived=loop.time() - 0.45)
        with pytest.raises(Overloaded):
            await late
        fresh = asyncio.ensure_future(batcher.predict(["t-fresh"], arrived=loop.time()))
        release.set()
        answers = await asyncio.gather(*running, fresh)
        alone = await batcher.predict(["t-alone"], arrived=loop.time() - 0.45)  # empty queue: admitted
        await batcher.stop()
        return answers, alone

    answers, alone = asyncio.run(scenario())
    assert all(a.shape == (1, 2) for a in answers) and alone.shape == (1, 2)


def test_length_aware_batches_group_similar_lengths_and_keep_rows_in_order():
    batches: list[list[str]] = []

    def infer(texts: list[str]) -> np.ndarray:
        batches.append(texts)
        return np.array([[len(t), 0.0] for t in texts])

    async def scenario():
        batcher = MicroBatcher(list, infer, max_batch_size=16, max_wait_ms=50, length_ratio=1.5)
        batcher.start()
        short, long = ["a" * 5] * 4, ["b" * 300] * 4
        mixed = [short[0], long[0], short[1], long[1]]
        out = await asyncio.gather(batcher.predict(mixed), batcher.predict(short[2:] + long[2:]))
        await batcher.stop()
        return mixed, out

    mixed, (first, _) = asyncio.run(scenario())
    assert first[:, 0].tolist() == [len(t) for t in mixed]  # rows back in request order
    assert all(len({len(t) for t in b}) == 1 for b in batches)  # short and long never share a pass


@pytest.fixture(scope="module")
def slow_server(tiny_model_dir, tmp_path_factory):
    """A live server on the tiny model whose inference is slowed to 100 ms a batch; admission: 4 texts."""
    settings = make_settings(
        tiny_model_dir,
        tmp_path_factory.mktemp("overload"),
        max_queued_texts=4,
        deadline_ms=1500,
        max_batch_size=2,
        retry_after_s=3,
    )
    app = create_app(settings, tracking_uri="unused")
    with uvicorn_server(app) as url:
        batcher = app.state.runtime.batcher
        real_infer = batcher._infer_fn

        def slowed(feeds):
            time.sleep(0.1)
            return real_infer(feeds)

        batcher._infer_fn = slowed
        yield url


def test_overloaded_server_sheds_with_503_and_retry_after_in_every_protocol(slow_server):
    v2_body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["i am happy"]}]}
    calls = [
        ("/predict", {"texts": ["i am happy"]}),
        ("/invocations", {"instances": ["i am happy"]}),
        ("/v2/models/emotion-classifier/infer", v2_body),
    ]

    async def fire():
        async with httpx.AsyncClient(base_url=slow_server, timeout=30) as client:
            return await asyncio.gather(*(client.post(p, json=b) for _ in range(12) for p, b in calls))

    responses = asyncio.run(fire())
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and codes.count(503) > 0 and codes.count(200) >= 4, codes
    assert all(r.headers["retry-after"] == "3" for r in responses if r.status_code == 503)
    metrics = httpx.get(slow_server + "/metrics").text
    # every 503 was a refusal on arrival, none a request that queued and then missed its deadline
    assert f'serving_shed_requests_total{{reason="queue_full"}} {codes.count(503):.1f}' in metrics
    assert 'reason="deadline"' not in metrics
    assert "serving_queue_depth 0.0" in metrics


MULTIPROCESS_SCRIPT = textwrap.dedent(
    """
    import os, sys
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    from serving.metrics import ServingMetrics
    for _ in range(2):  # two "workers", each its own process
        pid = os.fork()
        if pid == 0:
            m = ServingMetrics()
            m.observe_request("/predict", "POST", 200, 0.01)
            m.observe_batch(4, 0.01)
            m.observe_shed("queue_full")
            m.set_model("models:/x/1", "1", None, "onnx-int8-static")
            os._exit(0)
        os.waitpid(pid, 0)
    sys.stdout.write(ServingMetrics().render().decode())
    """
)


def test_metrics_are_summed_over_workers_in_multiprocess_mode(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_SCRIPT, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'serving_requests_total{endpoint="/predict",method="POST",status="200"} 2.0' in out
    assert 'serving_shed_requests_total{reason="queue_full"} 2.0' in out
    assert "serving_batch_size_count 2.0" in out and "serving_predicted_texts_total 8.0" in out
