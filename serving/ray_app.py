"""The serving app as a Ray Serve application: `serve run serving.ray_app:app_builder model_uri=...`.

Each replica runs the very app `serving.app.create_app` builds (all three protocols, validation,
errors, `/info`, metrics, the batcher and its admission), behind `serve.ingress`. The settings are
`ServeSettings`: the builder's arguments (`model_uri=...`, any field name) over the replica's
`SERVE_*` environment, so Ray Serve, Gunicorn and Kubernetes hosts are configured alike; the
replica count, autoscaling bounds and CPUs per replica are fields of the same model.

A replica becomes ready only once its model is loaded and warmed up (the lifespan waits,
`load_before_serving`), so Ray Serve routes nothing to a replica that could not answer, and a
model that cannot load fails the replica's start-up instead of serving 503s. Rolling upgrades
surge (`max_surge_percent=100`): the new replicas start before the old ones stop.
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application

from serving.settings import ServeSettings

DEPLOYMENT_NAME = "EmotionClassifier"
APP_NAME = "emotion-classifier"
# the old replicas keep serving until as many new ones run: an upgrade never leaves a gap
MAX_SURGE_PERCENT = 100


@serve.ingress()
class EmotionClassifier:
    """One replica: the FastAPI app, built on the replica (late-bound) from the settings given."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = ServeSettings(**settings)
        self._app = None

    def __serve_build_asgi_app__(self):
        import os

        from serving.app import create_app

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the batcher has its own threads
        self._app = create_app(self._settings, load_before_serving=True)
        return self._app

    def check_health(self) -> None:
        """Ray Serve's periodic probe: a replica whose model stopped being ready is replaced."""
        runtime = self._app.state.runtime if self._app is not None else None
        if runtime is None or not runtime.ready:
            raise RuntimeError(f"model not ready: {runtime.reason if runtime else 'app not built'}")


def deployment_options(settings: ServeSettings) -> dict[str, Any]:
    """Ray Serve deployment options from the serving settings (replicas, autoscaling, CPUs)."""
    options: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": {"num_cpus": settings.cpus_per_replica},
        "max_ongoing_requests": settings.max_ongoing_requests,
        "max_queued_requests": settings.max_queued_requests,
        "max_surge_percent": MAX_SURGE_PERCENT,
        "health_check_period_s": 5,
        # loading and warming up a model takes seconds; a stuck one is failed, not waited for
        "graceful_shutdown_timeout_s": 30,
    }
    if settings.max_replicas is not None and settings.max_replicas > settings.replicas:
        options["autoscaling_config"] = {
            "min_replicas": settings.replicas,
            "initial_replicas": settings.replicas,
            "max_replicas": settings.max_replicas,
            "target_ongoing_requests": settings.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = settings.replicas
    return options


def app_builder(args: dict[str, Any]) -> Application:
    """The application for `serve run` / a Serve config's `import_path`; `args` are ServeSettings fields."""
    overrides = {key: value for key, value in dict(args or {}).items() if value is not None}
    unknown = sorted(set(overrides) - set(ServeSettings.model_fields))
    if unknown:
        known = sorted(ServeSettings.model_fields)
        raise ValueError(f"unknown serving settings {unknown}; the fields are {known}")
    settings = ServeSettings(**overrides)  # validated here, where the deploy is submitted
    deployment = serve.deployment(EmotionClassifier).options(**deployment_options(settings))
    return deployment.bind(overrides)
