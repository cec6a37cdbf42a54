"""Every template of the compiled workflow speaks its step's contract.

Its arguments, with the workflow's default parameters filled in, are parsed by the real CLI of its
step and validate against the step's `Input` model; every output parameter names a field of the
step's `Result`. A renamed field or flag fails here, not in a cluster run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from argo_docs import templates_of
from pydantic import BaseModel

from pipelines import parameters
from shared.step_cli import build_parser, field_name, flag_name, parse_args, validate_input
from steps import cache_keys as cache_key
from steps.deploy.contract import DeployInput, DeployResult
from steps.dvc_fetch.contract import FetchInput, FetchResult
from steps.hpo.contract import HpoInput, HpoResult, HpoResultQuery
from steps.register.contract import RegisterInput, RegisterResult
from steps.tokenize.contract import TokenizeInput, TokenizeResult

ROOT = Path(__file__).resolve().parents[2]
COMPILED = ROOT / "pipelines" / "emotion-hpo.yaml"

# module (and sub-command) -> (Input, Result)
CONTRACTS: dict[tuple[str, str | None], tuple[type[BaseModel], type[BaseModel]]] = {
    ("steps.dvc_fetch", None): (FetchInput, FetchResult),
    ("steps.tokenize", None): (TokenizeInput, TokenizeResult),
    ("steps.hpo", None): (HpoInput, HpoResult),
    ("steps.hpo", "result"): (HpoResultQuery, HpoResult),
    ("steps.register", None): (RegisterInput, RegisterResult),
    ("steps.deploy", "rollout"): (DeployInput, DeployResult),
}
SUBCOMMANDS = {"result", "rollout"}


def _fill(arg: str) -> str:
    """A placeholder replaced by what Argo would pass: defaults for parameters, paths for artifacts."""
    defaults = parameters.defaults()

    def one(match: re.Match) -> str:
        ref = match.group(1).strip()
        if ref.startswith("workflow.parameters."):
            return defaults[ref.removeprefix("workflow.parameters.")]
        if ref.startswith(("inputs.artifacts.", "outputs.artifacts.")):
            return f"/tmp/{ref.split('.')[2]}"
        if ref.startswith("inputs.parameters."):
            return "emotion-v1.0.0" if ref.endswith("data-version") else "x"
        return "wf-uid"  # workflow.uid, workflow.name

    return re.sub(r"\{\{([^}]*)\}\}", one, arg)


def _step_templates() -> list[tuple[str, str, str | None, list[str], list[dict]]]:
    wf = yaml.safe_load(COMPILED.read_text())
    found = []
    for name, template in templates_of(wf).items():
        container = template.get("container")
        if not container or container.get("command", [])[:2] != ["python", "-m"]:
            continue
        module = container["command"][2]
        args = [_fill(a) for a in container.get("args", [])]
        sub = args[0] if args and args[0] in SUBCOMMANDS else None
        outputs = (template.get("outputs") or {}).get("parameters") or []
        found.append((name, module, sub, args[1:] if sub else args, outputs))
    return found


STEP_TEMPLATES = _step_templates()


def test_every_step_module_of_the_workflow_has_a_contract():
    modules = {(module, sub) for _, module, sub, _, _ in STEP_TEMPLATES}
    assert set(CONTRACTS) <= modules, "a step contract is not used by any template"
    unknown = modules - set(CONTRACTS) - {("steps.cache_keys", None), ("steps.rayjob_manifest", None)}
    assert not unknown, f"templates run modules without a known contract: {unknown}"


@pytest.mark.parametrize("name,module,sub,args,outputs", STEP_TEMPLATES, ids=[t[0] for t in STEP_TEMPLATES])
def test_template_arguments_parse_with_the_steps_cli_and_validate(name, module, sub, args, outputs):
    if module == "steps.cache_keys":  # its own small argparse contract: every input, then the result dir
        flags = [a for a in args if a.startswith("--")]
        assert flags == [f"--{name}" for name in cache_key.INPUTS] + ["--result-dir"]
        return
    if module == "steps.rayjob_manifest":
        search = args[args.index("--") + 1 :]
        raw, _ = parse_args(HpoInput, search, prog="python -m steps.hpo")
        validate_input(HpoInput, {"tokenized_dir": "/data/tokenized", **raw})
        return
    model, _ = CONTRACTS[(module, sub)]
    raw, result_dir = parse_args(model, args, prog=f"python -m {module}")
    assert result_dir == Path("/tmp/result"), f"{name} does not write its result where outputs read it"
    validate_input(model, raw)  # types, ranges and enums of the workflow's defaults


@pytest.mark.parametrize("name,module,sub,args,outputs", STEP_TEMPLATES, ids=[t[0] for t in STEP_TEMPLATES])
def test_output_parameters_are_result_fields(name, module, sub, args, outputs):
    if (module, sub) not in CONTRACTS:
        return
    _, result = CONTRACTS[(module, sub)]
    names = {p["name"] for p in outputs}
    assert names == {flag_name(f) for f in result.model_fields}, name
    for p in outputs:
        assert p["valueFrom"]["path"] == f"/tmp/result/{p['name']}"
        assert field_name(p["name"]) in result.model_fields


def test_workflow_parameters_feeding_a_field_carry_its_name_and_default():
    """`max-epochs` feeds HpoInput.max_epochs; a default is written once, on the contract."""
    cluster_overrides = {"registry-url", "cpus-per-trial", "gpus-per-trial", "deploy-target"}
    cluster_overrides |= {"deploy-namespace", "storage-dir"}
    for spec in parameters.PARAMETERS:
        for model, field in spec.feeds:
            assert flag_name(field) == spec.name
            info = model.model_fields[field]
            if spec.name in cluster_overrides or spec.name == "search-space":
                continue
            default = info.get_default(call_default_factory=True)
            assert parameters._text(default) == spec.default, (spec.name, model.__name__)


def test_generated_help_lists_every_field_with_its_description():
    for model, _ in CONTRACTS.values():
        text = " ".join(build_parser(model, "prog").format_help().split())
        for field, info in model.model_fields.items():
            if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("cli") is False:
                assert f"--{flag_name(field)}" not in text
                continue
            assert f"--{flag_name(field)}" in text
            if info.description:
                assert " ".join(info.description.split())[:30] in text


def test_generated_help_names_value_types_and_one_default_per_flag():
    import re

    for model, _ in CONTRACTS.values():
        text = " ".join(build_parser(model, "prog").format_help().split())
        assert " VALUE" not in text, model.__name__
        for part in re.split(r"(?= --[a-z])", text):  # one flag's help each
            assert part.count("(default") <= 1, part
    from steps.hpo.contract import HpoInput

    text = " ".join(build_parser(HpoInput, "prog").format_help().split())
    for flag, metavar in {"--num-samples": "INT", "--search-space": "PATH", "--ray-address": "URI"}.items():
        assert f"{flag} {metavar}" in text
    assert "--search-alg random|optuna" in text
