"""What a pod provides a step, locally: its working directory, volumes, secrets and config maps,
and the extra containers (init containers before the main one, sidecars beside it).

- The container's file system is the task's `fs/` folder: absolute paths the template declares
  (artifacts, output parameters, volume mounts, `workingDir`) live under it, and the process runs
  in `fs/<workingDir>` (`fs/` when unset, the image's usual `/`). Images of this project
  (`CHECKOUT_IMAGES`) hold the checkout as their working directory, so they run in the checkout.
- `emptyDir` volumes are folders: per step when the template declares them, per run when the
  workflow does. `secret` and `configMap` volumes, and env `secretKeyRef`/`configMapKeyRef`, are
  read from the `--values-dir` folder (`secrets/<name>/<key>`, `configmaps/<name>/<key>`), never
  from a cluster. A `persistentVolumeClaim` is a folder that outlives runs, as a claim does:
  `<local dir>/volumes/<claimName>`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from pipelines.local_runner.errors import WorkflowError

CHECKOUT_IMAGES = ("emotion-hpo-train", "emotion-hpo-serve")
VALUE_KINDS = {"secretKeyRef": "secrets", "configMapKeyRef": "configmaps"}


def main_body(template: dict) -> dict:
    return template.get("container") or template.get("script") or {}


def mount_paths(template: dict) -> list[str]:
    paths = [m["mountPath"] for m in main_body(template).get("volumeMounts") or []]
    for extra in (template.get("initContainers") or []) + (template.get("sidecars") or []):
        paths += [m["mountPath"] for m in extra.get("volumeMounts") or []]
    working = main_body(template).get("workingDir")
    return paths + ([working] if working else [])


def working_dir(template: dict, fs: Path, checkout: Path, image: str) -> Path:
    body = main_body(template)
    if body.get("workingDir"):
        path = fs.joinpath(*Path(body["workingDir"]).parts[1:])
        path.mkdir(parents=True, exist_ok=True)
        return path
    if any(name in image for name in CHECKOUT_IMAGES):
        return checkout
    return fs


def read_value(
    values_dir: Path | None, kind: str, name: str, key: str, optional: bool, where: str
) -> str | None:
    """A secret's or config map's key from the values folder; None when optional and absent."""
    folder = VALUE_KINDS[kind]
    path = Path(values_dir) / folder / name / key if values_dir else None
    if path is not None and path.is_file():
        return path.read_text()
    if optional:
        return None
    hint = f"create {path}" if path is not None else f"pass --values-dir with {folder}/{name}/{key}"
    raise WorkflowError(f"{where}: {kind} {name}/{key} is not available locally ({hint})")


def volume_sources(
    template: dict,
    workflow_volumes: dict[str, dict],
    run_dir: Path,
    task_dir: Path,
    values_dir: Path | None,
    claims_dir: Path | None = None,
) -> dict[str, Path]:
    """mount path -> local folder or file to link there, for each volume mount of the template."""
    volumes = dict(workflow_volumes)
    local_volumes = {v["name"]: v for v in template.get("volumes") or []}
    volumes.update(local_volumes)
    sources: dict[str, Path] = {}
    mounts = list(main_body(template).get("volumeMounts") or [])
    for extra in (template.get("initContainers") or []) + (template.get("sidecars") or []):
        mounts += extra.get("volumeMounts") or []
    for mount in mounts:
        name = mount["name"]
        volume = volumes.get(name)
        where = f"template {template.get('name')!r} volume {name!r}"
        if volume is None:
            raise WorkflowError(f"{where} is mounted but not declared")
        if "emptyDir" in volume:
            base = task_dir if name in local_volumes else run_dir
            folder = base / "volumes" / name
        elif "persistentVolumeClaim" in volume and claims_dir is not None:
            folder = claims_dir / volume["persistentVolumeClaim"]["claimName"]
        elif "secret" in volume or "configMap" in volume:
            kind, ref = (
                ("secretKeyRef", volume["secret"])
                if "secret" in volume
                else (
                    "configMapKeyRef",
                    volume["configMap"],
                )
            )
            ref_name = ref.get("secretName") or ref.get("name")
            folder = task_dir / "volumes" / name
            source = Path(values_dir) / VALUE_KINDS[kind] / ref_name if values_dir else None
            if source is None or not source.is_dir():
                if not ref.get("optional"):
                    raise WorkflowError(
                        f"{where}: {VALUE_KINDS[kind][:-1]} {ref_name!r} is not available locally "
                        f"(pass --values-dir with {VALUE_KINDS[kind]}/{ref_name}/)"
                    )
                folder.mkdir(parents=True, exist_ok=True)
            elif not folder.exists():
                shutil.copytree(source, folder)
        else:
            raise WorkflowError(f"{where}: only emptyDir, secret and configMap volumes run locally")
        folder.mkdir(parents=True, exist_ok=True)
        if mount.get("subPath"):
            folder = folder / mount["subPath"]
            folder.mkdir(parents=True, exist_ok=True)
        sources[mount["mountPath"]] = folder
    return sources


def link_mounts(fs: Path, sources: dict[str, Path]) -> None:
    for mount_path, folder in sources.items():
        target = fs.joinpath(*Path(mount_path).parts[1:])
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        target.symlink_to(folder.resolve(), target_is_directory=True)


def pod_spec_patch_effect(text: str, where: str) -> None:
    """Accept a `podSpecPatch` that only sizes containers (no local effect); refuse any other patch.

    Placeholders are read as null, so a patch can be checked before its values are known.
    """
    import re

    import yaml

    from pipelines.local_runner.errors import UnsupportedFeature

    plain = re.sub(r"\{\{.*?\}\}", "null", str(text))
    try:
        patch = yaml.safe_load(plain)
    except yaml.YAMLError:
        raise UnsupportedFeature(f"{where}: podSpecPatch is not valid JSON/YAML") from None
    containers = patch.get("containers") if isinstance(patch, dict) else None
    if (
        not isinstance(patch, dict)
        or set(patch) != {"containers"}
        or not isinstance(containers, list)
        or any(not isinstance(c, dict) or set(c) - {"name", "resources"} for c in containers)
    ):
        raise UnsupportedFeature(
            f"{where}: podSpecPatch is supported locally only when it sets containers' resources "
            "(which change nothing locally)"
        )
