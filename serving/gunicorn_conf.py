"""Gunicorn configuration for the local inference server, read from `server.json`.

Gunicorn executes this file when the master starts and again on every SIGHUP. The deploy step
rolls the server over to a new model by rewriting `server.json` and sending SIGHUP: the master
keeps its listening socket (no connection is refused), starts new Uvicorn workers with the new
environment (`SERVE_MODEL_URI`, ...), and stops the old workers gracefully, so requests they
are answering finish first (up to `graceful_timeout`). A new worker accepts connections only
once the app's lifespan startup (model load) has finished.

Metrics: every worker writes its Prometheus samples to a directory beside the config
(`PROMETHEUS_MULTIPROC_DIR`, emptied when the master starts; a worker's live gauges are dropped
when it exits), so `/metrics` on any worker reports the whole server (serving/metrics.py).
"""

import json
import os
from pathlib import Path

from shared.environment import ProductEnvironment

_config = ProductEnvironment().serve_config
if not _config:
    raise SystemExit("EMOTION_SERVE_CONFIG is not set: the deploy step starts Gunicorn with this config")
_config_path = Path(_config)
_config = json.loads(_config_path.read_text())
# Set before any worker imports prometheus_client (it picks its value store at import time); the
# path is per config file, so a candidate instance never mixes its samples with the live server's.
_metrics_dir = _config_path.with_name(f".prometheus-{_config_path.stem}")
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)
# One tokenize thread per worker: the tokenizer's own thread pool would oversubscribe the cores the
# workers already share (as `python -m serving` does, serving/__main__.py).
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

bind = [_config["bind"]]
workers = int(_config["workers"])
worker_class = "serving.worker.DrainingUvicornWorker"
graceful_timeout = int(_config["graceful_timeout"])
timeout = int(_config["worker_timeout"])  # model loading happens before the first heartbeat
raw_env = [f"{key}={value}" for key, value in sorted(_config["env"].items())]
errorlog = _config["log_file"]
accesslog = _config["log_file"]
capture_output = True
pidfile = _config.get("pid_file")
proc_name = "emotion-serving"
control_socket_disable = True  # one fixed per-user path would clash between a server and its candidate
preload_app = False  # each worker imports the app and loads the model named by its env


def on_starting(server):
    """Empty the metrics directory (a fresh server starts from zero); import the heavy libraries once
    in the master, so each forked worker starts faster."""
    import shutil

    shutil.rmtree(_metrics_dir, ignore_errors=True)
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    import importlib
    import importlib.util

    for module in ("fastapi", "mlflow", "onnxruntime", "tokenizers", "torch", "transformers"):
        if importlib.util.find_spec(module) is not None:  # the slim serving image has no torch
            importlib.import_module(module)


def child_exit(server, worker):
    """Drop the exited worker's live gauges (queue depth, model ready); its counters stay counted."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_metrics_dir))
