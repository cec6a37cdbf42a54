"""The environment a step gets locally: what its template declares, and nothing else of the host.

A pod sees the variables its container declares (`env`, with `secretKeyRef`/`configMapKeyRef`
read from the cluster) and those its image sets; it never sees the shell that submitted the
workflow. Locally, a step gets:

- the variables its template declares (`value`, and refs read from `--values-dir`);
- the runner's own variables (`EMOTION_LOCAL_DIR`, `ARGO_PROGRESS_FILE`; `base`);
- a short allow-list of the host's (`HOST_VARIABLES`, `LC_*`): what a process needs to run at all
  (the program search path, home, locale, time zone, temp folder, the virtualenv), which an image
  provides in a pod;
- the host variables named with `--pass-env NAME` (an explicit, visible choice).

So a step that reads a variable its template does not declare fails locally as in its pod, and a
host variable never satisfies a required secret: a required ref found in neither `--values-dir`
nor `--pass-env` is refused before the run (`required_missing`), as Argo fails the pod.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipelines.local_runner.pod import VALUE_KINDS, read_value

HOST_VARIABLES = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "VIRTUAL_ENV",
    "PYTHONPATH",
)
HOST_PREFIXES = ("LC_",)


def host_variables(environ: Mapping[str, str] | None = None, passed: Iterable[str] = ()) -> dict[str, str]:
    """The host variables a step may see: the allow-list and the names passed with --pass-env."""
    environ = os.environ if environ is None else environ
    names = set(passed)
    return {
        k: v for k, v in environ.items() if k in HOST_VARIABLES or k.startswith(HOST_PREFIXES) or k in names
    }


def step_environment(
    body: Mapping,
    substitute_value,
    base: Mapping[str, str],
    values_dir: Path | None,
    where: str,
    on_host: bool = True,
) -> dict[str, str]:
    """`base` (allowed host + runner variables) + the container's declared `env`.

    `on_host`: the step runs as a process of the runner's environment, whose tools (dvc, mlflow) it
    finds on PATH first; in its image (`--engine`) PATH is the image's.

    `substitute_value(name, text)` expands a `value` (placeholders, container paths). A ref is
    read from the values folder; a ref the folder lacks takes `base`'s variable of that name when
    there is one (a --pass-env name), else an optional one is unset and a required one is an error.
    """
    env = dict(base)
    if on_host:  # tools the steps call by name (dvc, git via dvc, mlflow): the runner's environment first
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    env.setdefault("PYTHONUNBUFFERED", "1")
    for var in body.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = substitute_value(name, str(var["value"]))
        elif "valueFrom" in var:
            kind, ref = next(iter(var["valueFrom"].items()))
            optional = bool(ref.get("optional")) or name in base
            value = read_value(values_dir, kind, ref["name"], ref["key"], optional, f"{where} env {name}")
            if value is not None:
                env[name] = value
            elif name not in base:
                env.pop(name, None)
        else:
            env[name] = ""
    return env


def required_missing(body: Mapping, base: Mapping[str, str], values_dir: Path | None, where: str) -> None:
    """Raise WorkflowError for a required env ref that neither --values-dir nor --pass-env gives."""
    for var in body.get("env") or []:
        for kind, ref in (var.get("valueFrom") or {}).items():
            if kind in VALUE_KINDS and not ref.get("optional") and var["name"] not in base:
                read_value(values_dir, kind, ref["name"], ref["key"], False, f"{where} env {var['name']}")
