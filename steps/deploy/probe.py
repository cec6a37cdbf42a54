"""The health gate: a server instance takes traffic only after `/ready` and a smoke prediction pass."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from serving.gated_app import SMOKE_TEXTS
from shared.errors import StepError
from shared.processes import NotReady, wait_http


def wait_ready(
    url: str, timeout_s: float, alive: Callable[[], bool] | None = None, poll_s: float = 0.25
) -> None:
    """Poll `GET {url}/ready` until it answers 200; fail early when the process died or the model failed."""
    try:
        wait_http(f"{url}/ready", timeout_s, alive=alive, failed=_reports_failed, poll_s=poll_s)
    except NotReady as exc:
        raise StepError(str(exc)) from None


def _reports_failed(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == "failed"


def smoke_predict(url: str, timeout_s: float = 30.0) -> str:
    """POST a known text to `/predict`; check the answer's shape; return the served model version."""
    try:
        response = httpx.post(f"{url}/predict", json={"texts": SMOKE_TEXTS}, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise StepError(
            f"smoke prediction against {url}/predict failed: {exc.__class__.__name__}: {exc}"
        ) from None
    if response.status_code != 200:
        raise StepError(
            f"smoke prediction against {url}/predict: HTTP {response.status_code}: {response.text[:300]}"
        )
    try:
        body = response.json()
        predictions = body["predictions"]
        version = body["model_version"]
    except (ValueError, KeyError, TypeError):
        raise StepError(
            f"smoke prediction against {url}/predict: unexpected body {response.text[:300]}"
        ) from None
    if not isinstance(predictions, list) or len(predictions) != len(SMOKE_TEXTS):
        raise StepError(
            f"smoke prediction: expected {len(SMOKE_TEXTS)} prediction(s), got {predictions!r:.300}"
        )
    for item in predictions:
        if not isinstance(item, dict):
            raise StepError(f"smoke prediction: malformed prediction {item!r:.300}")
        confidence = item.get("confidence")
        if not isinstance(item.get("emotion"), str) or not isinstance(confidence, int | float):
            raise StepError(f"smoke prediction: malformed prediction {item!r:.300}")
        if not 0.0 <= confidence <= 1.0:
            raise StepError(f"smoke prediction: confidence {confidence} is outside [0, 1]")
    if not isinstance(version, str | int) or str(version) == "":
        raise StepError(f"smoke prediction: no model_version in {response.text[:300]}")
    return str(version)
