"""Settings come from SERVE_* variables (or are passed in); bad values are refused by name."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from serving.settings import DEFAULT_BACKEND, DEFAULT_MODEL_URI, ServeSettings
from tests.conftest import ROOT


def test_defaults_are_safe_for_a_laptop(monkeypatch):
    for key in ("SERVE_HOST", "SERVE_PORT", "SERVE_MODEL_URI", "SERVE_BACKEND"):
        monkeypatch.delenv(key, raising=False)
    settings = ServeSettings()
    assert settings.host == "127.0.0.1" and settings.port == 8000
    assert (
        settings.model_uri == DEFAULT_MODEL_URI and settings.backend == DEFAULT_BACKEND == "onnx-int8-static"
    )
    assert settings.overlong == "reject"


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("SERVE_MODEL_URI", "models:/emotion-classifier/3")
    monkeypatch.setenv("SERVE_PORT", "9001")
    monkeypatch.setenv("SERVE_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("SERVE_MAX_WAIT_MS", "0")
    monkeypatch.setenv("SERVE_OVERLONG", "truncate")
    settings = ServeSettings()
    assert settings.model_uri == "models:/emotion-classifier/3" and settings.port == 9001
    assert settings.max_batch_size == 8 and settings.max_wait_ms == 0 and settings.overlong == "truncate"


@pytest.mark.parametrize(
    "key, value", [("SERVE_OVERLONG", "ignore"), ("SERVE_BACKEND", "tf"), ("SERVE_PORT", "x")]
)
def test_bad_values_are_refused_by_name(monkeypatch, key, value):
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=key.removeprefix("SERVE_").lower()):
        ServeSettings()


def test_importing_the_app_has_no_side_effects():
    code = "import serving.app, sys; print('torch' in sys.modules, 'mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "serving", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "--model-uri" in out.stdout and "--port" in out.stdout
