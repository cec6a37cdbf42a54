"""What the deploy tests share: the model name, and a load generator that records every outcome."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
MODEL = "emotion-classifier"


class LoadGenerator:
    """Threads that keep POSTing /predict (a fresh connection per request) and record every outcome:
    the model version answering, else the status and body (a 503 without Retry-After is marked)."""

    def __init__(self, url: str, threads: int = 4, texts: list[str] | None = None) -> None:
        self.url, self.results, self._stop = url, [], threading.Event()
        self.texts = texts or ["what a lovely day"]
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=120, limits=limits) as http:
            while not self._stop.is_set():
                try:
                    response = http.post(f"{self.url}/predict", json={"texts": self.texts})
                    outcome = (
                        response.json()["model_version"]
                        if response.status_code == 200
                        else (f"HTTP {response.status_code}: {response.text[:200]}")
                    )
                    if response.status_code == 503 and "retry-after" not in response.headers:
                        outcome = f"HTTP 503 without Retry-After: {response.text[:200]}"  # a failure
                    ok = response.status_code == 200
                except httpx.HTTPError as exc:
                    outcome, ok = f"{exc.__class__.__name__}: {exc}", False
                self.results.append((time.monotonic(), ok, outcome))

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
