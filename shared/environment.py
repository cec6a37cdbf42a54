"""The environment variables read outside the two settings objects, declared once.

`shared.settings.Settings` (the steps' platform settings) and `serving.settings.ServeSettings`
(`SERVE_*`) declare most of what the product reads. The rest is declared here, so that every
variable the code reads has one declaration with a description, and `docs/environment.md` is
generated from these models (`python -m shared.env_table`); a test fails when the code reads a
variable no model declares.

- `ProductEnvironment`: the product's own knobs (`EMOTION_*`, the Argo CLI's `ARGO_*`, the engine).
- `PlatformEnvironment`: other tools' variables that the product consults or sets for a library.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str, default: str | None, description: str):
    return Field(default=default, validation_alias=AliasChoices(name), description=description)


class ProductEnvironment(BaseSettings):
    """The product's own variables beyond `Settings` and `ServeSettings` (read as strings)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    hpo_storage: str | None = _env(
        "EMOTION_HPO_STORAGE",
        None,
        "search storage root (a folder or s3://...); default $EMOTION_LOCAL_DIR/hpo",
    )
    dataset_dir: str | None = _env(
        "EMOTION_DATASET_DIR",
        None,
        "dataset folder `make demo` builds the registry from (else ../shared, else the Hub)",
    )
    hf_revision: str | None = _env(
        "EMOTION_HF_REVISION", None, "dair-ai/emotion revision to download; default the pinned commit"
    )
    schemas_dir: str | None = _env(
        "EMOTION_SCHEMAS_DIR",
        None,
        "Argo/KubeRay JSON schemas to validate against; default the vendored copy",
    )
    progress_interval_s: str | None = _env(
        "EMOTION_PROGRESS_INTERVAL_S",
        None,
        "seconds between the local runner's plain progress lines (default 10)",
    )
    serve_config: str | None = _env(
        "EMOTION_SERVE_CONFIG",
        None,
        "JSON of the deploy step's server options, read by serving/gunicorn_conf.py",
    )
    serve_gate_timeout_s: str = _env(
        "EMOTION_SERVE_GATE_TIMEOUT_S", "300", "seconds a Gunicorn worker waits for its model before failing"
    )
    container_engine: str | None = _env(
        "CONTAINER_ENGINE",
        None,
        "podman or docker for images and `run_local --engine`; default the one installed",
    )
    argo_server: str | None = _env(
        "ARGO_SERVER", None, "Argo server (host:port or URL) for pipelines/submit.py"
    )
    argo_token: str | None = _env("ARGO_TOKEN", None, "bearer token for the Argo server (never printed)")
    argo_namespace: str | None = _env("ARGO_NAMESPACE", None, "namespace to submit to (default argo)")
    argo_base_href: str | None = _env("ARGO_BASE_HREF", None, "path prefix of the Argo server (default /)")
    argo_secure: str = _env(
        "ARGO_SECURE", "true", "false: plain http to an ARGO_SERVER given without a scheme"
    )
    argo_insecure_skip_verify: str | None = _env(
        "ARGO_INSECURE_SKIP_VERIFY", None, "true: do not verify the Argo server's TLS certificate"
    )


class PlatformEnvironment(BaseSettings):
    """Other tools' variables the product reads (or sets for a library), with what it does with them."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    aws_region: str | None = _env(
        "AWS_REGION",
        None,
        "region of the S3 search storage when AWS_DEFAULT_REGION is unset (else us-east-1)",
    )
    aws_default_region: str | None = _env("AWS_DEFAULT_REGION", None, "region of the S3 search storage")
    aws_endpoint_url: str | None = _env(
        "AWS_ENDPOINT_URL",
        None,
        "S3 endpoint when MLFLOW_S3_ENDPOINT_URL is unset (search storage, DVC remote)",
    )
    aws_endpoint_url_s3: str | None = _env("AWS_ENDPOINT_URL_S3", None, "S3 endpoint of a DVC remote")
    aws_session_token: str | None = _env(
        "AWS_SESSION_TOKEN",
        None,
        "temporary S3 credentials: like the keys, hidden from Ray's trial environment",
    )
    aws_security_token: str | None = _env(
        "AWS_SECURITY_TOKEN", None, "older name of AWS_SESSION_TOKEN (the same)"
    )
    argo_progress_file: str | None = _env(
        "ARGO_PROGRESS_FILE",
        None,
        "where a step writes its N/M progress (Argo sets it; the local runner too)",
    )
    hf_endpoint: str | None = _env("HF_ENDPOINT", None, "Hugging Face Hub mirror for the dataset download")
    https_proxy: str | None = _env(
        "HTTPS_PROXY", None, "with HTTP_PROXY/ALL_PROXY (any case): no reachability probe of the Hub is made"
    )
    http_proxy: str | None = _env("HTTP_PROXY", None, "see HTTPS_PROXY")
    all_proxy: str | None = _env("ALL_PROXY", None, "see HTTPS_PROXY")
    kubeconfig: str | None = _env("KUBECONFIG", None, "deploy target kubernetes: the cluster to roll out to")
    kubernetes_service_host: str | None = _env(
        "KUBERNETES_SERVICE_HOST", None, "set in a pod: deploy uses the in-cluster config"
    )
    ray_auth_token: str | None = _env(
        "RAY_AUTH_TOKEN",
        None,
        "deploy target ray-serve: the token of a Ray cluster with token authentication (RAY_AUTH_MODE=token)",
    )
    ray_auth_token_path: str | None = _env(
        "RAY_AUTH_TOKEN_PATH", None, "see RAY_AUTH_TOKEN: a file holding it (else ~/.ray/auth_token, if any)"
    )
    git_commit: str | None = _env(
        "GIT_COMMIT", None, "the code's commit, baked into the images; else read from the checkout"
    )
    prometheus_multiproc_dir: str | None = _env(
        "PROMETHEUS_MULTIPROC_DIR", None, "metrics of all Gunicorn workers; set by the deploy step"
    )
    tokenizers_parallelism: str | None = _env(
        "TOKENIZERS_PARALLELISM", None, "set to false by the tokenize step and the server unless given"
    )
    mlflow_enable_artifacts_progress_bar: str | None = _env(
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None, "set to false by register unless given"
    )
    tune_global_checkpoint_s: str | None = _env(
        "TUNE_GLOBAL_CHECKPOINT_S", None, "set by hpo (2 s) so an interrupted search loses little"
    )
    tune_max_pending_trials_pg: str | None = _env(
        "TUNE_MAX_PENDING_TRIALS_PG",
        None,
        "set by hpo to the trials that run at once, so trials start in the same order after a resume",
    )
    tune_warn_excessive_experiment_checkpoint_sync_threshold_s: str | None = _env(
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", None, "set by hpo to quiet a warning"
    )
