"""The end-of-run summary, built from the tasks' output parameters and result.json files.

Written to `<run dir>/summary.json` and printed: the best trial (hpo result), the registered model
version and whether it was promoted (register result), the server URL (deploy result), where the
logs are, and how to open the MLflow UI and stop the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from pipelines.local_runner.paths import task_folder
from pipelines.local_runner.state import RunState
from shared.results import atomic_write_text
from shared.settings import DEFAULT_LOCAL_DIR

MLFLOW_UI_URL = "http://127.0.0.1:5000"
SMOKE_TEXTS = ["I love this!", "This makes me angry"]


def _parse(value: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def task_results(state: RunState, run_dir: Path) -> dict[str, dict[str, Any]]:
    """Per finished task: its result.json fields, completed by its output parameters (snake_case)."""
    results: dict[str, dict[str, Any]] = {}
    for name, task in state.tasks.items():
        if task.phase not in ("succeeded", "cached"):
            continue
        data: dict[str, Any] = {k.replace("-", "_"): _parse(v) for k, v in task.parameters.items()}
        fs = Path(run_dir) / "tasks" / task_folder(name) / "fs"
        for result_file in sorted(fs.rglob("result.json")) if fs.is_dir() else []:
            try:
                data.update(json.loads(result_file.read_text()))
                break
            except (OSError, ValueError):
                continue
        results[name] = data
    return results


def _find(results: dict[str, dict[str, Any]], field: str) -> dict[str, Any] | None:
    for data in results.values():
        if field in data:
            return data
    return None


def smoke_request(endpoint: str, timeout: float = 30.0) -> dict[str, Any]:
    """POST the README's two sentences to the deployed server; report what it answered."""
    import httpx

    try:
        response = httpx.post(endpoint.rstrip("/") + "/predict", json={"texts": SMOKE_TEXTS}, timeout=timeout)
        body = response.json()
        if response.status_code != 200:
            return {"ok": False, "status": response.status_code, "body": body}
        return {
            "ok": True,
            "predictions": [
                (p["text"], p["emotion"], round(float(p["confidence"]), 3))
                for p in body.get("predictions", [])
            ],
        }
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}


def stop_command(local_dir: Path | None) -> str:
    """`make stop` for the default `.local`; otherwise the deploy step's stop with that folder."""
    if local_dir is None or Path(local_dir).resolve() == DEFAULT_LOCAL_DIR.resolve():
        return "make stop"
    return f"EMOTION_LOCAL_DIR={local_dir} python -m steps.deploy stop"


def build_summary(
    state: RunState,
    run_dir: Path,
    smoke: bool = True,
    local_dir: Path | None = None,
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    run_dir = Path(run_dir)
    results = task_results(state, run_dir)
    summary: dict[str, Any] = {
        "run_id": state.run_id,
        "phase": state.phase,
        "workflow_uid": state.workflow_uid,
        "duration_s": round((state.finished_at or state.created_at) - state.created_at, 1),
        "tasks": {name: t.phase for name, t in state.tasks.items()},
        "run_dir": str(run_dir),
        "logs_dir": str(run_dir / "logs"),
    }
    hpo = _find(results, "best_config")
    if hpo:
        summary["best_trial"] = {
            k: hpo.get(k)
            for k in ("best_config", "best_val_accuracy", "best_val_loss", "best_run_id", "parent_run_id")
            if k in hpo
        }
    register = _find(results, "promoted")
    if register:
        summary["registered_model"] = {
            k: register.get(k)
            for k in ("model_name", "version", "promoted", "reason", "model_uri", "champion_version")
            if k in register
        }
    deploy = _find(results, "endpoint_url")
    if deploy:
        summary["server"] = {
            k: deploy.get(k) for k in ("endpoint_url", "served_version", "model_uri", "target") if k in deploy
        }
        if smoke and state.phase == "succeeded" and deploy.get("endpoint_url"):
            summary["server"]["smoke_test"] = smoke_request(str(deploy["endpoint_url"]))
    tracking = tracking_uri or state.parameters.get("mlflow-tracking-uri")
    if tracking is not None:
        summary["mlflow"] = {"tracking_uri": tracking, "ui": MLFLOW_UI_URL, "open_with": "make mlflow-ui"}
    if deploy:
        summary["stop_server_with"] = stop_command(local_dir)
    return summary


def write_summary(summary: dict[str, Any], run_dir: Path) -> Path:
    path = Path(run_dir) / "summary.json"
    atomic_write_text(path, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    return path


def print_summary(summary: dict[str, Any], console: Console) -> None:
    ok = summary["phase"] == "succeeded"
    colour = "green" if ok else ("yellow" if summary["phase"] == "interrupted" else "red")
    console.print(
        f"\n[bold {colour}]Run {summary['run_id']} {summary['phase']}[/] in {summary['duration_s']}s",
        markup=True,
    )
    best = summary.get("best_trial")
    if best:
        acc = best.get("best_val_accuracy")
        acc_text = f"{float(acc):.4f}" if isinstance(acc, (int, float)) else str(acc)
        console.print(
            f"  Best trial: val accuracy {acc_text}, hyperparameters "
            f"{json.dumps(best.get('best_config'), sort_keys=True)}"
        )
    reg = summary.get("registered_model")
    if reg:
        verdict = "promoted to champion" if reg.get("promoted") in (True, "true") else "not promoted"
        reason = f" ({reg['reason']})" if reg.get("reason") else ""
        console.print(
            f"  Registered: {reg.get('model_name', 'model')} version {reg.get('version')}, {verdict}{reason}"
        )
    server = summary.get("server")
    if server:
        console.print(
            f"  Server: {server.get('endpoint_url')}  (API docs: {server.get('endpoint_url')}/docs)"
        )
        smoke = server.get("smoke_test")
        if smoke and smoke.get("ok"):
            for text, emotion, confidence in smoke["predictions"]:
                console.print(f"    {text!r} -> {emotion} ({confidence})")
        elif smoke:
            console.print(
                f"    [yellow]smoke request failed: {smoke.get('error') or smoke.get('status')}[/]",
                markup=True,
            )
    console.print(f"  Logs: {summary['logs_dir']}")
    mlflow = summary.get("mlflow")
    if mlflow:
        console.print(
            f"  MLflow UI: `{mlflow['open_with']}`, then open {mlflow['ui']} "
            f"(tracking URI {mlflow['tracking_uri']})"
        )
    if summary.get("stop_server_with"):
        console.print(f"  Stop the server: `{summary['stop_server_with']}`")
