"""Under load (10,000 requests at 16-64 concurrency) nothing fails and memory stays flat."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from shared.processes import free_port
from tests.conftest import ROOT
from tests.serving.conftest import wait_ready

TOTAL_REQUESTS = 10_000
WARMUP_REQUESTS = 1_000
TEXTS = [
    "i feel so happy today",
    "this makes me really angry and i do not know why",
    "i am scared of what might happen tomorrow",
    "what a surprise to see you here after all these years",
    "i miss you so much it hurts",
]


async def _fire(base_url: str, n: int, concurrency: int, seed: int) -> list[int]:
    """Send n requests from `concurrency` clients (1-3 texts each); return the status codes."""
    rng = random.Random(seed)
    bodies = [{"texts": rng.sample(TEXTS, rng.randint(1, 3))} for _ in range(n)]
    statuses: list[int] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:

        async def worker(start: int) -> None:
            for body in bodies[start::concurrency]:
                try:
                    response = await client.post("/predict", json=body)
                    ok = response.status_code == 200 and len(response.json()["predictions"]) == len(
                        body["texts"]
                    )
                    statuses.append(response.status_code if ok else -response.status_code)
                except httpx.HTTPError:
                    statuses.append(0)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return statuses


@pytest.mark.slow
def test_ten_thousand_requests_no_failures_flat_memory(tiny_model_dir, tmp_path):
    port = free_port()
    env = os.environ | {
        "SERVE_MODEL_URI": str(tiny_model_dir),
        "SERVE_PORT": str(port),
        "SERVE_CACHE_DIR": str(tmp_path / "cache"),
        "SERVE_LOG_LEVEL": "warning",
        # admission sized to the offered load (64 clients x at most 3 texts) and no deadline: this test
        # is about nothing failing; shedding past the bound is tested in test_overload.py
        "SERVE_MAX_QUEUED_TEXTS": "192",
        "SERVE_DEADLINE_MS": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "serving"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                wait_ready(httpx.Client(base_url=base_url).get)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        server = psutil.Process(proc.pid)
        warm = asyncio.run(_fire(base_url, WARMUP_REQUESTS, 16, seed=0))
        rss_after_warmup = server.memory_info().rss
        statuses = []
        for i, concurrency in enumerate((16, 32, 64)):
            statuses += asyncio.run(
                _fire(base_url, (TOTAL_REQUESTS - WARMUP_REQUESTS) // 3, concurrency, seed=i + 1)
            )
        rss_at_end = server.memory_info().rss
        metrics = httpx.get(base_url + "/metrics").text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    all_statuses = warm + statuses
    assert len(all_statuses) == TOTAL_REQUESTS
    assert all(s == 200 for s in all_statuses), {s: all_statuses.count(s) for s in set(all_statuses)}
    growth = rss_at_end - rss_after_warmup
    assert growth < max(50 * 2**20, 0.15 * rss_after_warmup), (rss_after_warmup, rss_at_end)
    # batching happened: a real share of the forward passes carried several requests' texts
    values = {
        line.split()[0]: float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("serving_batch_size") and not line.startswith("#")
    }
    passes, texts = values["serving_batch_size_count"], values["serving_batch_size_sum"]
    single = values['serving_batch_size_bucket{le="1.0"}']
    assert texts >= TOTAL_REQUESTS, values  # every request's texts were computed (1-3 each)
    assert passes - single >= 10, f"only {passes - single:g} forward passes merged requests: {values}"
    assert texts / passes >= 1.5, f"{texts / passes:.2f} texts per forward pass: no real batching: {values}"
    assert proc.returncode in (0, -15)  # graceful shutdown on SIGTERM
