"""Gunicorn configuration for the local inference server, read from `server.json`.

Gunicorn executes this file when the master starts and again on every SIGHUP. The deploy step
rolls the server over to a new model by rewriting `server.json` and sending SIGHUP: the master
keeps its listening socket (no connection is refused), starts new Uvicorn workers with the new
environment (`SERVE_MODEL_URI`, ...), and stops the old workers gracefully, so requests they
are answering finish first (up to `graceful_timeout`). A new worker accepts connections only
once the app's lifespan startup (model load) has finished.
"""

import json
import os
from pathlib import Path

_config = json.loads(Path(os.environ["EMOTION_SERVE_CONFIG"]).read_text())

bind = [_config["bind"]]
workers = int(_config["workers"])
worker_class = "steps.deploy.worker.DrainingUvicornWorker"
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
    """Import the heavy libraries once in the master, so each forked worker starts faster."""
    import fastapi  # noqa: F401
    import mlflow  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
