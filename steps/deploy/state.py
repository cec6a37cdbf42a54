"""What the local target deployed, and what the server should run, as files under `.local/serving/`.

Two files, two readers:
- `server.json` is the server's desired configuration (bind address, model URI, env). The
  Gunicorn config (`gunicorn_conf.py`) reads it at start and again on every SIGHUP, so a
  rollout rewrites it and signals the master.
- `state.json` is the deploy step's record of what runs (model version, URL, pids, log file);
  `status` prints it and `stop` uses it.
Both are written atomically, so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from shared.results import atomic_write_text

STATE_FILE = "state.json"
SERVER_CONFIG_FILE = "server.json"
SERVER_LOG_FILE = "server.log"
PID_FILE = "gunicorn.pid"


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ServerConfig(BaseModel):
    """What the Gunicorn master serves; re-read on SIGHUP."""

    bind: str
    workers: int = Field(default=1, ge=1)
    graceful_timeout: int = Field(default=30, ge=1)
    worker_timeout: int = Field(default=300, ge=10)
    log_file: str
    pid_file: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class ServingState(BaseModel):
    """The record of the local deployment."""

    target: str = "local"
    model_uri: str
    model_version: str
    url: str
    host: str
    port: int
    master_pid: int
    worker_pids: list[int] = Field(default_factory=list)
    log_file: str
    server_config: str
    started_at: str
    updated_at: str
    previous_model_uri: str | None = None
    previous_model_version: str | None = None


def read_json_model(path: Path, model: type[BaseModel]):
    """Parse a state/config file, or None when it does not exist."""
    if not path.is_file():
        return None
    return model.model_validate(json.loads(path.read_text()))


def write_json_model(path: Path, value: BaseModel) -> None:
    atomic_write_text(path, json.dumps(value.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")


def load_state(state_dir: Path) -> ServingState | None:
    return read_json_model(Path(state_dir) / STATE_FILE, ServingState)


def save_state(state_dir: Path, state: ServingState) -> None:
    write_json_model(Path(state_dir) / STATE_FILE, state)


def clear_state(state_dir: Path) -> None:
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
