"""The server's routes, one `APIRouter` per protocol; `serving.app.create_app` includes them.

- `native`: the project's own API (`/`, `/health`, `/ready`, `/info`, `/predict`, `/metrics`);
- `mlflow`: MLflow's scoring-server protocol (`/ping`, `/version`, `/invocations`);
- `v2`: the Open Inference Protocol v2 of KServe and Triton (`/v2/...`).

Every route gets the app's `ModelRuntime` and `ServeSettings` as dependencies (`serving.routes.deps`).
"""
