"""The emotion-hpo pipeline as Hera objects: a WorkflowTemplate, a one-off Workflow, a thin template run.

DAG (task names are stable; other code and docs refer to them):

    cache-keys -> dvc-fetch -> tokenize-to-parquet -+-> hpo ---------------------------+-> register -> deploy
                                                    '-> hpo-rayjob-manifest              |
                                                        -> hpo-rayjob -> hpo-rayjob-result'

- `hpo` runs when hpo-runner == in-pod; the three rayjob tasks when hpo-runner == rayjob. `register`
  depends on both branches by plain name, so the skipped one does not block it, and finds the
  search's MLflow parent run by the workflow uid, which works for both runners.
- `deploy` runs only when register promoted the new version to champion.
- File paths in args are only `{{inputs/outputs.artifacts.X.path}}` or paths declared as artifact
  paths of that template, so the local runner can map them to directories. Each step writes its
  result files to the output artifact `result` (/tmp/result); output parameters read
  /tmp/result/<field-kebab>.

Builders are pure (no I/O, no global config); `pipelines.compile` writes the YAML, `pipelines.submit`
sends it; `to_manifest()` is the dict form both use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hera.workflows import (
    DAG,
    Artifact,
    ConfigMapEnv,
    Container,
    EmptyDirVolume,
    Env,
    NoneArchiveStrategy,
    Parameter,
    RawArtifact,
    Resource,
    Resources,
    RetryStrategy,
    S3Artifact,
    SecretEnv,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows.models import Artifact as ArtifactModel
from hera.workflows.models import (
    Backoff,
    Cache,
    LocalObjectReference,
    ManifestFrom,
    Memoize,
    ValueFrom,
    WorkflowTemplateRef,
)

from pipelines import cache_key, parameters
from pipelines.rayjob import CONFIG_MAP, FAILURE_CONDITION, S3_SECRET, SUCCESS_CONDITION

NAME = "emotion-hpo"
SERVICE_ACCOUNT = "emotion-hpo"
MEMO_CONFIGMAP = "emotion-hpo-memo"
MEMO_MAX_AGE = "720h"
RESULT_DIR = "/tmp/result"
TRAIN_IMAGE = "{{workflow.parameters.image-registry}}/emotion-hpo-train:{{workflow.parameters.image-tag}}"
SERVING_IMAGE = "{{workflow.parameters.image-registry}}/emotion-hpo-serving:{{workflow.parameters.image-tag}}"
TOKENIZED_PREFIX = "emotion-hpo/tokenized"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME}

IN_POD = "'{{workflow.parameters.hpo-runner}}' == 'in-pod'"
RAYJOB = "'{{workflow.parameters.hpo-runner}}' == 'rayjob'"
PROMOTED = "{{tasks.register.outputs.parameters.promoted}} == true"

HPO_OUTPUTS = (
    "parent-run-id",
    "best-run-id",
    "best-trial-id",
    "best-val-loss",
    "best-val-accuracy",
    "best-config",
    "experiment-id",
    "model-uri",
)


def wp(name: str) -> str:
    """`{{workflow.parameters.<name>}}`, checked against the declared parameters."""
    if name not in parameters.BY_NAME:
        raise KeyError(f"no workflow parameter {name!r}")
    return f"{{{{workflow.parameters.{name}}}}}"


def _env() -> list:
    """Lineage and platform settings for every step; secrets only by reference (optional)."""
    return [
        Env(name="MLFLOW_TRACKING_URI", value=wp("mlflow-tracking-uri")),
        Env(name="MLFLOW_EXPERIMENT_NAME", value=wp("mlflow-experiment-name")),
        Env(name="DVC_DATA_VERSION", value=wp("data-version")),
        Env(name="ARGO_WORKFLOW_UID", value="{{workflow.uid}}"),
        Env(name="DOCKER_IMAGE_TAG", value=wp("image-tag")),
        SecretEnv(
            name="AWS_ACCESS_KEY_ID", secret_name=S3_SECRET, secret_key="AWS_ACCESS_KEY_ID", optional=True
        ),
        SecretEnv(
            name="AWS_SECRET_ACCESS_KEY",
            secret_name=S3_SECRET,
            secret_key="AWS_SECRET_ACCESS_KEY",
            optional=True,
        ),
        ConfigMapEnv(
            name="MLFLOW_S3_ENDPOINT_URL",
            config_map_name=CONFIG_MAP,
            config_map_key="MLFLOW_S3_ENDPOINT_URL",
            optional=True,
        ),
    ]


def _retry(limit: int, *, policy: str = "Always", duration: str = "30s") -> RetryStrategy:
    """Retry transient failures with exponential backoff; exit code 2 (bad input, StepError) never."""
    return RetryStrategy(
        limit=limit,
        retry_policy=policy,
        expression="asInt(lastRetry.exitCode) != 2" if policy == "Always" else None,
        backoff=Backoff(duration=duration, factor=2, max_duration="15m"),
    )


def _memoize(key: str) -> Memoize:
    return Memoize(
        key=key, max_age=MEMO_MAX_AGE, cache=Cache(config_map=LocalObjectReference(name=MEMO_CONFIGMAP))
    )


def _result_outputs(fields: tuple[str, ...]) -> list:
    return [Artifact(name="result", path=RESULT_DIR)] + [
        Parameter(name=f, value_from=ValueFrom(path=f"{RESULT_DIR}/{f}")) for f in fields
    ]


def _step(
    name: str,
    module: str,
    args: list[str],
    *,
    outputs: tuple[str, ...],
    deadline: int,
    resources: Resources,
    retry: RetryStrategy | None,
    inputs: list | None = None,
    extra_outputs: list | None = None,
    result: bool = True,
    **kwargs: Any,
) -> Container:
    """A container template running `python -m <module> <args> --result-dir /tmp/result`."""
    return Container(
        name=name,
        image=TRAIN_IMAGE,
        command=["python", "-m", module],
        args=[*args, "--result-dir", "{{outputs.artifacts.result.path}}"] if result else args,
        env=_env(),
        inputs=inputs or [],
        outputs=[*(extra_outputs or []), *(_result_outputs(outputs) if result else [])],
        resources=resources,
        retry_strategy=retry,
        active_deadline_seconds=deadline,
        **kwargs,
    )


def _search_args() -> list[str]:
    """The search settings, passed alike to the in-pod hpo step and the RayJob's entrypoint."""
    return [
        "--model",
        wp("model"),
        "--num-samples",
        wp("num-samples"),
        "--num-epochs",
        wp("max-epochs"),
        "--search-alg",
        wp("search-alg"),
        "--grace-period",
        wp("asha-grace-period"),
        "--reduction-factor",
        wp("asha-reduction-factor"),
    ]


def _trial_resource_args() -> list[str]:
    return ["--cpus-per-trial", wp("cpus-per-trial"), "--gpus-per-trial", wp("gpus-per-trial")]


def _lineage_args() -> list[str]:
    """Lineage of the data, from the template's inputs (set from the dvc-fetch step's result)."""
    return [
        "--data-version",
        "{{inputs.parameters.data-version}}",
        "--dataset-hash",
        "{{inputs.parameters.dataset-hash}}",
        "--registry-url",
        "{{inputs.parameters.registry-url}}",
    ]


def _define_templates() -> None:
    """Create every template and the DAG inside the current Workflow/WorkflowTemplate context."""
    cache_keys = _step(
        "cache-keys",
        "pipelines.cache_key",
        [arg for name in cache_key.INPUTS for arg in (f"--{name}", wp(name))],
        outputs=("dvc-fetch", "tokenize"),
        deadline=300,
        resources=Resources(cpu_request="100m", memory_request="256Mi"),
        retry=_retry(3, duration="10s"),
    )
    dvc_fetch = _step(
        "dvc-fetch",
        "steps.dvc_fetch",
        [
            "--registry-url",
            wp("registry-url"),
            "--rev",
            wp("data-version"),
            "--path",
            wp("data-path"),
            "--output-dir",
            "{{outputs.artifacts.dataset.path}}",
        ],
        inputs=[Parameter(name="cache-key")],
        extra_outputs=[Artifact(name="dataset", path="/tmp/outputs/dataset")],
        outputs=("data-version", "commit", "dataset-hash", "registry-url", "rows", "class-counts"),
        deadline=1800,
        resources=Resources(cpu_request=1, memory_request="2Gi"),
        retry=_retry(3),
        memoize=_memoize("{{inputs.parameters.cache-key}}"),
    )
    tokenize = _step(
        "tokenize-to-parquet",
        "steps.tokenize",
        [
            "--dataset-dir",
            "{{inputs.artifacts.dataset.path}}",
            "--model",
            wp("model"),
            "--max-length",
            wp("max-length"),
            "--limit",
            wp("limit"),
            "--eval-limit",
            wp("eval-limit"),
            "--seed",
            wp("seed"),
            "--output-dir",
            "{{outputs.artifacts.tokenized.path}}",
        ],
        inputs=[Parameter(name="cache-key"), Artifact(name="dataset", path="/tmp/inputs/dataset")],
        # A fixed, content-addressed key (the repository's bucket) so a RayJob can download it too.
        extra_outputs=[
            S3Artifact(
                name="tokenized",
                path="/tmp/outputs/tokenized",
                key=f"{TOKENIZED_PREFIX}/{{{{inputs.parameters.cache-key}}}}",
                archive=NoneArchiveStrategy(),
            )
        ],
        outputs=("rows", "model", "max-length", "tokenized-hash"),
        deadline=3600,
        resources=Resources(cpu_request=2, memory_request="4Gi"),
        retry=_retry(2),
        memoize=_memoize("{{inputs.parameters.cache-key}}"),
    )
    lineage_inputs = [Parameter(name=n) for n in ("data-version", "dataset-hash", "registry-url")]
    hpo = _step(
        "hpo",
        "steps.hpo",
        [
            "--tokenized-dir",
            "{{inputs.artifacts.tokenized.path}}",
            *_search_args(),
            "--search-space",
            "{{inputs.artifacts.search-space.path}}",
            *_trial_resource_args(),
            "--ray-address",
            wp("ray-address"),
            "--seed",
            wp("seed"),
            "--storage-dir",
            "{{outputs.artifacts.ray-results.path}}",
            *_lineage_args(),
        ],
        inputs=[
            *lineage_inputs,
            Artifact(name="tokenized", path="/tmp/inputs/tokenized"),
            RawArtifact(name="search-space", path="/tmp/inputs/search-space.yaml", data=wp("search-space")),
        ],
        extra_outputs=[Artifact(name="ray-results", path="/tmp/outputs/ray-results", optional=True)],
        outputs=HPO_OUTPUTS,
        deadline=21600,
        resources=Resources(cpu_request=8, memory_request="32Gi", memory_limit="32Gi", gpus=1),
        # Pod-level errors only (eviction, node loss): a failed search is not worth hours more.
        retry=_retry(2, policy="OnError", duration="1m"),
        volumes=[EmptyDirVolume(name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="8Gi")],
    )
    manifest = _step(
        "hpo-rayjob-manifest",
        "pipelines.rayjob",
        [
            "--image",
            TRAIN_IMAGE,
            "--workflow-uid",
            "{{workflow.uid}}",
            "--workflow-name",
            "{{workflow.name}}",
            "--tokenized-key",
            f"{TOKENIZED_PREFIX}/{{{{inputs.parameters.cache-key}}}}",
            "--search-space",
            "{{inputs.artifacts.search-space.path}}",
            *_search_args(),
            *_trial_resource_args(),
            "--seed",
            wp("seed"),
            *_lineage_args(),
            "--env-mlflow-tracking-uri",
            wp("mlflow-tracking-uri"),
            "--env-mlflow-experiment-name",
            wp("mlflow-experiment-name"),
            "--env-dvc-data-version",
            wp("data-version"),
            "--env-docker-image-tag",
            wp("image-tag"),
            "--output",
            "{{outputs.artifacts.manifest.path}}",
        ],
        inputs=[
            Parameter(name="cache-key"),
            *lineage_inputs,
            RawArtifact(name="search-space", path="/tmp/inputs/search-space.yaml", data=wp("search-space")),
        ],
        extra_outputs=[Artifact(name="manifest", path="/tmp/outputs/rayjob.yaml")],
        outputs=(),
        result=False,
        deadline=300,
        resources=Resources(cpu_request="100m", memory_request="256Mi"),
        retry=_retry(2, duration="10s"),
    )
    rayjob = Resource(
        name="hpo-rayjob",
        action="create",
        set_owner_reference=True,
        manifest_from=ManifestFrom(artifact=ArtifactModel(name="manifest")),
        success_condition=SUCCESS_CONDITION,
        failure_condition=FAILURE_CONDITION,
        inputs=[Artifact(name="manifest", path="/tmp/inputs/rayjob.yaml")],
        outputs=[Parameter(name="rayjob-name", value_from=ValueFrom(json_path="{.metadata.name}"))],
        active_deadline_seconds=22200,
    )
    rayjob_result = _step(
        "hpo-rayjob-result",
        "steps.hpo",
        ["result", "--workflow-uid", "{{workflow.uid}}"],
        outputs=HPO_OUTPUTS,
        deadline=600,
        resources=Resources(cpu_request="250m", memory_request="512Mi"),
        retry=_retry(3),
    )
    register = _step(
        "register",
        "steps.register",
        [
            "--workflow-uid",
            "{{workflow.uid}}",
            "--dataset-dir",
            "{{inputs.artifacts.dataset.path}}",
            "--model-name",
            wp("model-name"),
            "--tolerance",
            wp("promotion-tolerance"),
            "--eval-limit",
            wp("eval-limit"),
        ],
        inputs=[Artifact(name="dataset", path="/tmp/inputs/dataset")],
        outputs=(
            "model-name",
            "version",
            "model-uri",
            "promoted",
            "reason",
            "challenger-accuracy",
            "champion-version",
            "champion-accuracy",
        ),
        deadline=3600,
        resources=Resources(cpu_request=2, memory_request="8Gi"),
        retry=_retry(3),
    )
    deploy = _step(
        "deploy",
        "steps.deploy",
        [
            "rollout",
            "--model-uri",
            f"models:/{wp('model-name')}@champion",
            "--target",
            wp("deploy-target"),
            "--port",
            wp("serving-port"),
            "--image",
            SERVING_IMAGE,
            "--namespace",
            wp("deploy-namespace"),
        ],
        outputs=("target", "endpoint-url", "model-uri", "served-version"),
        # Only the deploy pod may touch Deployments/Services (steps/deploy/k8s/rbac.yaml).
        service_account_name="emotion-deploy",
        deadline=1800,
        resources=Resources(cpu_request="500m", memory_request="1Gi"),
        retry=_retry(2),
    )

    with DAG(name="main"):
        t_keys = cache_keys(name="cache-keys")
        t_fetch = dvc_fetch(
            name="dvc-fetch",
            arguments=[Parameter(name="cache-key", value=t_keys.get_parameter("dvc-fetch").value)],
        )
        t_tok = tokenize(
            name="tokenize-to-parquet",
            arguments=[
                Parameter(name="cache-key", value=t_keys.get_parameter("tokenize").value),
                t_fetch.get_artifact("dataset").with_name("dataset"),
            ],
        )
        lineage_args = [
            Parameter(name=n, value=t_fetch.get_parameter(n).value)
            for n in ("data-version", "dataset-hash", "registry-url")
        ]
        t_hpo = hpo(
            name="hpo",
            when=IN_POD,
            arguments=[*lineage_args, t_tok.get_artifact("tokenized").with_name("tokenized")],
        )
        t_manifest = manifest(
            name="hpo-rayjob-manifest",
            when=RAYJOB,
            arguments=[
                Parameter(name="cache-key", value=t_keys.get_parameter("tokenize").value),
                *lineage_args,
            ],
        )
        t_rayjob = rayjob(
            name="hpo-rayjob",
            when=RAYJOB,
            arguments=[t_manifest.get_artifact("manifest").with_name("manifest")],
        )
        t_result = rayjob_result(name="hpo-rayjob-result", when=RAYJOB)
        t_register = register(
            name="register", arguments=[t_fetch.get_artifact("dataset").with_name("dataset")]
        )
        t_deploy = deploy(name="deploy", when=PROMOTED)

        t_keys >> t_fetch >> t_tok
        t_tok >> [t_hpo, t_manifest]
        t_manifest >> t_rayjob >> t_result
        [t_hpo, t_result] >> t_register
        t_register >> t_deploy


def _spec_kwargs(values: Mapping[str, str]) -> dict[str, Any]:
    return {
        "entrypoint": "main",
        "service_account_name": SERVICE_ACCOUNT,
        "active_deadline_seconds": 43200,
        "labels": dict(LABELS),
        "arguments": [
            Parameter(
                name=p.name,
                value=values[p.name],
                description=p.description,
                enum=list(p.enum) if p.enum else None,
            )
            for p in parameters.PARAMETERS
        ],
    }


def build_workflow_template(namespace: str | None = None) -> WorkflowTemplate:
    """The WorkflowTemplate `emotion-hpo`: what the Argo UI submits and resubmits."""
    with WorkflowTemplate(name=NAME, namespace=namespace, **_spec_kwargs(parameters.defaults())) as wt:
        _define_templates()
    return wt


def build_workflow(params: Mapping[str, str] | None = None, namespace: str | None = None) -> Workflow:
    """A standalone Workflow with the whole spec inline (what the local runner runs)."""
    values = parameters.resolve(params)
    with Workflow(generate_name=f"{NAME}-", namespace=namespace, **_spec_kwargs(values)) as wf:
        _define_templates()
    return wf


def build_template_run(params: Mapping[str, str] | None = None, namespace: str | None = None) -> Workflow:
    """A thin Workflow referencing the installed template, passing every parameter explicitly.

    Passing all of them (not just the overrides) is what makes the UI's Resubmit dialog list them.
    """
    values = parameters.resolve(params)
    return Workflow(
        generate_name=f"{NAME}-",
        namespace=namespace,
        labels={**LABELS, "workflows.argoproj.io/workflow-template": NAME},
        workflow_template_ref=WorkflowTemplateRef(name=NAME),
        arguments=[Parameter(name=name, value=value) for name, value in values.items()],
    )


def to_manifest(obj: Workflow | WorkflowTemplate) -> dict[str, Any]:
    """The object as the dict to write or send (camelCase keys, no empty fields)."""
    return obj.to_dict()


__all__ = ["build_template_run", "build_workflow", "build_workflow_template", "to_manifest"]
