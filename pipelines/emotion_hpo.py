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
    S3Artifact,
    SecretEnv,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows.models import Artifact as ArtifactModel
from hera.workflows.models import (
    Cache,
    LocalObjectReference,
    ManifestFrom,
    Memoize,
    Mutex,
    PodSecurityContext,
    SecurityContext,
    Synchronization,
    ValueFrom,
    WorkflowTemplateRef,
)
from pydantic import BaseModel

from pipelines import parameters
from pipelines.contract_templates import (
    cli_args,
    result_args,
    result_outputs,
    retry,
    workflow_fields,
    wp,
)
from shared.pod_shape import container_security_context, pod_security_context
from shared.step_cli import flag_name
from steps import cache_keys as cache_key
from steps import rayjob_manifest as rayjob
from steps.deploy.contract import DeployInput, DeployResult
from steps.dvc_fetch.contract import FetchInput, FetchResult
from steps.hpo.contract import HpoInput, HpoResult, HpoResultQuery
from steps.rayjob_manifest import CONFIG_MAP, FAILURE_CONDITION, S3_SECRET, SUCCESS_CONDITION
from steps.register.contract import RegisterInput, RegisterResult
from steps.tokenize.contract import TokenizeInput, TokenizeResult

NAME = "emotion-hpo"
SERVICE_ACCOUNT = "emotion-hpo"
MEMO_CONFIGMAP = "emotion-hpo-memo"
MEMO_MAX_AGE = "720h"
TRAIN_IMAGE = "{{workflow.parameters.image-registry}}/emotion-hpo-train:{{workflow.parameters.image-tag}}"
SERVING_IMAGE = "{{workflow.parameters.image-registry}}/emotion-hpo-serving:{{workflow.parameters.image-tag}}"
TOKENIZED_PREFIX = "emotion-hpo/tokenized"
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": NAME}

IN_POD = "'{{workflow.parameters.hpo-runner}}' == 'in-pod'"
RAYJOB = "'{{workflow.parameters.hpo-runner}}' == 'rayjob'"
PROMOTED = "{{tasks.register.outputs.parameters.promoted}} == true"


def _env() -> list:
    """Platform settings and lineage for every step; secrets only by reference (optional)."""
    return [
        *(Env(name=env, value=wp(param)) for env, param in rayjob.ENV_PARAMETERS.items()),
        Env(name="ARGO_WORKFLOW_UID", value="{{workflow.uid}}"),
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


def _memoize(key: str) -> Memoize:
    return Memoize(
        key=key, max_age=MEMO_MAX_AGE, cache=Cache(config_map=LocalObjectReference(name=MEMO_CONFIGMAP))
    )


def _container(
    name: str,
    module: str,
    args: list[str],
    *,
    result: type[BaseModel] | None,
    deadline: int,
    resources: Resources,
    retry_limit: int,
    retry_duration: str = "30s",
    inputs: list | None = None,
    extra_outputs: list | None = None,
    **kwargs: Any,
) -> Container:
    """A container template running `python -m <module> <args>` under the failure policy's retry rule;
    with a `result` model it also takes `--result-dir` and exposes the result's fields as outputs."""
    return Container(
        name=name,
        image=TRAIN_IMAGE,
        command=["python", "-m", module],
        args=[*args, *result_args()] if result is not None else args,
        env=_env(),
        inputs=inputs or [],
        outputs=[*(extra_outputs or []), *(result_outputs(result) if result is not None else [])],
        resources=resources,
        retry_strategy=retry(retry_limit, duration=retry_duration),
        active_deadline_seconds=deadline,
        security_context=SecurityContext.model_validate(container_security_context(read_only_root=False)),
        **kwargs,
    )


# Lineage of the data, from the dvc-fetch step's result (input parameters of the hpo templates).
LINEAGE_FIELDS = ("data_version", "dataset_hash", "registry_url")


def _lineage_inputs() -> list:
    return [Parameter(name=flag_name(f)) for f in LINEAGE_FIELDS]


def hpo_search_fields() -> dict[str, str]:
    """The search's inputs from workflow parameters, alike for the in-pod step and the RayJob."""
    return {
        **workflow_fields(
            HpoInput,
            "model",
            "num_samples",
            "max_epochs",
            "search_alg",
            "asha_grace_period",
            "asha_reduction_factor",
            "cpus_per_trial",
            "gpus_per_trial",
            "seed",
            "storage_dir",
        ),
        # Always the workflow's uid: a retried step (new pod, after an eviction or a node loss)
        # continues this workflow's search from the artifact store instead of starting over.
        "workflow_uid": "{{workflow.uid}}",
        **{f: f"{{{{inputs.parameters.{flag_name(f)}}}}}" for f in LINEAGE_FIELDS},
    }


def _search_space_input() -> RawArtifact:
    return RawArtifact(name="search-space", path="/tmp/inputs/search-space.yaml", data=wp("search-space"))


def cache_keys_template() -> Container:
    return _container(
        "cache-keys",
        "steps.cache_keys",
        [arg for name in cache_key.INPUTS for arg in (f"--{name}", wp(name))],
        result=cache_key.CacheKeys,
        deadline=300,
        resources=Resources(cpu_request="100m", memory_request="256Mi"),
        retry_limit=3,
        retry_duration="10s",
    )


def dvc_fetch_template() -> Container:
    values = {
        **workflow_fields(FetchInput, "registry_url", "data_version", "data_path"),
        "output_dir": "{{outputs.artifacts.dataset.path}}",
    }
    return _container(
        "dvc-fetch",
        "steps.dvc_fetch",
        cli_args(FetchInput, values),
        result=FetchResult,
        inputs=[Parameter(name="cache-key")],
        extra_outputs=[Artifact(name="dataset", path="/tmp/outputs/dataset")],
        deadline=1800,
        resources=Resources(cpu_request=1, memory_request="2Gi"),
        retry_limit=3,
        memoize=_memoize("{{inputs.parameters.cache-key}}"),
    )


def tokenize_template() -> Container:
    values = {
        "dataset_dir": "{{inputs.artifacts.dataset.path}}",
        **workflow_fields(TokenizeInput, "model", "max_length", "limit", "eval_limit", "seed"),
        "output_dir": "{{outputs.artifacts.tokenized.path}}",
    }
    return _container(
        "tokenize-to-parquet",
        "steps.tokenize",
        cli_args(TokenizeInput, values),
        result=TokenizeResult,
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
        deadline=3600,
        resources=Resources(cpu_request=2, memory_request="4Gi"),
        retry_limit=2,
        memoize=_memoize("{{inputs.parameters.cache-key}}"),
    )


def hpo_template() -> Container:
    values = {
        "tokenized_dir": "{{inputs.artifacts.tokenized.path}}",
        "search_space": "{{inputs.artifacts.search-space.path}}",
        **hpo_search_fields(),
        **workflow_fields(HpoInput, "ray_address"),
    }
    return _container(
        "hpo",
        "steps.hpo",
        cli_args(HpoInput, values),
        result=HpoResult,
        inputs=[
            *_lineage_inputs(),
            Artifact(name="tokenized", path="/tmp/inputs/tokenized"),
            _search_space_input(),
        ],
        deadline=21600,
        resources=Resources(cpu_request=8, memory_request="32Gi", memory_limit="32Gi", gpus=1),
        retry_limit=2,
        retry_duration="1m",
        volumes=[EmptyDirVolume(name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="8Gi")],
    )


def rayjob_manifest_template() -> Container:
    """Renders the RayJob whose entrypoint runs the hpo step with the same search fields."""
    own = [
        "--image",
        TRAIN_IMAGE,
        "--workflow-uid",
        "{{workflow.uid}}",
        "--workflow-name",
        "{{workflow.name}}",
        "--tokenized-key",
        f"{TOKENIZED_PREFIX}/{{{{inputs.parameters.cache-key}}}}",
        "--search-space-file",
        "{{inputs.artifacts.search-space.path}}",
        *[
            item
            for env, param in rayjob.ENV_PARAMETERS.items()
            for item in (f"--env-{env.lower().replace('_', '-')}", wp(param))
        ],
        "--output",
        "{{outputs.artifacts.manifest.path}}",
    ]
    # The search's fields follow `--`; `steps.rayjob_manifest` checks them against the hpo CLI.
    search = cli_args(HpoInput, hpo_search_fields(), fed_elsewhere=rayjob.ADDED_FIELDS)
    return _container(
        "hpo-rayjob-manifest",
        "steps.rayjob_manifest",
        [*own, "--", *search],
        result=None,
        inputs=[Parameter(name="cache-key"), *_lineage_inputs(), _search_space_input()],
        extra_outputs=[Artifact(name="manifest", path="/tmp/outputs/rayjob.yaml")],
        deadline=300,
        resources=Resources(cpu_request="100m", memory_request="256Mi"),
        retry_limit=2,
        retry_duration="10s",
    )


def rayjob_template() -> Resource:
    return Resource(
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


def rayjob_result_template() -> Container:
    return _container(
        "hpo-rayjob-result",
        "steps.hpo",
        ["result", *cli_args(HpoResultQuery, {"workflow_uid": "{{workflow.uid}}"})],
        result=HpoResult,
        deadline=600,
        resources=Resources(cpu_request="250m", memory_request="512Mi"),
        retry_limit=3,
    )


REGISTER_MUTEX = "emotion-hpo-register-{{workflow.parameters.model-name}}"


def register_template() -> Container:
    values = {
        "workflow_uid": "{{workflow.uid}}",
        "dataset_dir": "{{inputs.artifacts.dataset.path}}",
        **workflow_fields(
            RegisterInput, "model_name", "accuracy_tolerance", "f1_macro_tolerance", "eval_limit"
        ),
    }
    return _container(
        "register",
        "steps.register",
        cli_args(RegisterInput, values),
        result=RegisterResult,
        inputs=[Artifact(name="dataset", path="/tmp/inputs/dataset")],
        deadline=3600,
        resources=Resources(cpu_request=2, memory_request="8Gi"),
        retry_limit=3,
        # Two workflows never run the gate of one model at the same time (Argo's lock; the local
        # runner's too, across the runs of one local dir); promotion.py's re-read/re-gate stays as
        # the second line of defence.
        synchronization=Synchronization(mutexes=[Mutex(name=REGISTER_MUTEX)]),
    )


def deploy_template() -> Container:
    # The exact version this workflow's register step produced (models:/<name>/<version>), never
    # the moving `champion` alias: a concurrent workflow may have moved it meanwhile.
    values = {
        "model_uri": "{{inputs.parameters.model-uri}}",
        **workflow_fields(DeployInput, "deploy_target", "serving_port", "deploy_namespace"),
        "image": SERVING_IMAGE,
        "ray_image": TRAIN_IMAGE,  # deploy-target rayservice: its Ray pods need Ray Serve
    }
    return _container(
        "deploy",
        "steps.deploy",
        ["rollout", *cli_args(DeployInput, values)],
        result=DeployResult,
        inputs=[Parameter(name="model-uri")],
        # Only the deploy pod may touch Deployments/Services (steps/deploy/k8s/rbac.yaml).
        service_account_name="emotion-deploy",
        deadline=1800,
        resources=Resources(cpu_request="500m", memory_request="1Gi"),
        retry_limit=2,
    )


def _define_templates() -> None:
    """Create every template and the DAG inside the current Workflow/WorkflowTemplate context."""
    cache_keys = cache_keys_template()
    dvc_fetch = dvc_fetch_template()
    tokenize = tokenize_template()
    hpo = hpo_template()
    manifest = rayjob_manifest_template()
    rayjob_run = rayjob_template()
    rayjob_result = rayjob_result_template()
    register = register_template()
    deploy = deploy_template()

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
            Parameter(name=flag_name(f), value=t_fetch.get_parameter(flag_name(f)).value)
            for f in LINEAGE_FIELDS
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
        t_rayjob = rayjob_run(
            name="hpo-rayjob",
            when=RAYJOB,
            arguments=[t_manifest.get_artifact("manifest").with_name("manifest")],
        )
        t_result = rayjob_result(name="hpo-rayjob-result", when=RAYJOB)
        t_register = register(
            name="register", arguments=[t_fetch.get_artifact("dataset").with_name("dataset")]
        )
        t_deploy = deploy(
            name="deploy",
            when=PROMOTED,
            arguments=[Parameter(name="model-uri", value=t_register.get_parameter("model-uri").value)],
        )

        t_keys >> t_fetch >> t_tok
        t_tok >> [t_hpo, t_manifest]
        t_manifest >> t_rayjob >> t_result
        [t_hpo, t_result] >> t_register
        t_register >> t_deploy


def _spec_kwargs(values: Mapping[str, str]) -> dict[str, Any]:
    return {
        "entrypoint": "main",
        "service_account_name": SERVICE_ACCOUNT,
        # every pod of the workflow as the serving and Ray pods: shared/pod_shape.py
        "security_context": PodSecurityContext.model_validate(pod_security_context()),
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
