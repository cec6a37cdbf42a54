"""A Kubernetes container spec as a `podman run` / `docker run` command: the pod's shape, locally.

The same container dict the cluster gets (a workflow template's `container`, the Deployment's
`server` container from `steps/deploy/k8s_render.py`, a RayJob pod's) is turned into engine
flags, so a local container run has the pod's user, security context, resource limits, declared
environment and writable volumes, and nothing else:

- `securityContext` (container over pod): `runAsUser`/`runAsGroup` -> `--user`,
  `readOnlyRootFilesystem` -> `--read-only`, `capabilities.drop`/`add` -> `--cap-drop`/`--cap-add`,
  `allowPrivilegeEscalation: false` -> `--security-opt no-new-privileges`;
- `resources.limits` -> `--cpus`, `--memory`;
- `env` values as given (refs resolved by the caller) -> `--env`;
- each `volumeMounts` entry -> a bind mount of the host folder the caller gives for it, or a tmpfs.

The engine is $CONTAINER_ENGINE, else podman, else a Docker whose daemon answers (as
docker/engine.sh). Podman runs with runc when it is installed (Debian's crun fails on hosts with
hybrid cgroups), with limits this host allows (`--ulimit`).
"""

from __future__ import annotations

import os
import resource
import shutil
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

from shared.environment import ProductEnvironment

ENGINES = ("podman", "docker")


class EngineMissing(RuntimeError):
    """No container engine can run containers here (the message says what to install)."""


def engine_command(engine: str | None = None) -> list[str]:
    """argv prefix of the engine: ["podman", "--runtime", RUNC] or ["docker"]."""
    name = engine or ProductEnvironment().container_engine
    if not name:
        if shutil.which("podman"):
            name = "podman"
        elif shutil.which("docker") and _docker_answers():
            name = "docker"
        else:
            raise EngineMissing(
                "no container engine: install podman (apt-get install podman runc) or start Docker"
            )
    if shutil.which(name) is None:
        raise EngineMissing(f"container engine {name!r} is not installed")
    if Path(name).name.startswith("podman") and shutil.which("runc"):
        return [name, "--runtime", shutil.which("runc")]
    return [name]


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ulimit_args() -> list[str]:
    """Open files at this host's hard limit and a process cap it allows: podman's defaults may exceed
    what an unprivileged host (a container itself) lets runc set, which fails every start."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1_048_576 if nofile == resource.RLIM_INFINITY else nofile
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def security_args(container: Mapping, pod_security: Mapping | None = None) -> list[str]:
    ctx = {**(pod_security or {}), **(container.get("securityContext") or {})}
    args: list[str] = []
    if ctx.get("runAsUser") is not None:
        group = ctx.get("runAsGroup")
        args += ["--user", f"{ctx['runAsUser']}" + (f":{group}" if group is not None else "")]
    if ctx.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    caps = ctx.get("capabilities") or {}
    args += [f"--cap-drop={c}" for c in caps.get("drop") or []]
    args += [f"--cap-add={c}" for c in caps.get("add") or []]
    if ctx.get("fsGroup") is not None and ctx.get("fsGroup") != ctx.get("runAsGroup"):
        args += ["--group-add", str(ctx["fsGroup"])]
    if ctx.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    return args


def cpu_quantity(value: str) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def memory_quantity(value: str) -> int:
    """Bytes of a Kubernetes memory quantity (Mi, Gi, M, G, plain bytes)."""
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    units.update({"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12})
    for suffix in sorted(units, key=len, reverse=True):
        if text.endswith(suffix):
            return int(float(text[: -len(suffix)]) * units[suffix])
    return int(float(text))


def resource_args(container: Mapping) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    args: list[str] = []
    if limits.get("cpu"):
        args += ["--cpus", f"{cpu_quantity(limits['cpu']):g}"]
    if limits.get("memory"):
        args += ["--memory", str(memory_quantity(limits["memory"]))]
    return args


def mount_args(container: Mapping, sources: Mapping[str, Path | None]) -> list[str]:
    """A bind mount per volume mount (`sources[mountPath]`), a tmpfs where the source is None."""
    args: list[str] = []
    for mount in container.get("volumeMounts") or []:
        path = mount["mountPath"]
        if path not in sources:
            raise KeyError(f"no local source for the volume mounted at {path}")
        source = sources[path]
        mode = "ro" if mount.get("readOnly") else "rw"
        if source is None:
            args += ["--tmpfs", f"{path}:{mode},mode=1777"]
        else:
            args += ["-v", f"{Path(source).resolve()}:{path}:{mode}"]
    return args


def env_args(env: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for name, value in env.items():
        args += ["--env", f"{name}={value}"]
    return args


def declared_env(container: Mapping, values: Mapping[str, str] | None = None) -> dict[str, str]:
    """The container's `env` values; a `valueFrom` ref takes `values[name]` when given, else is unset."""
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif values and var["name"] in values:
            env[var["name"]] = values[var["name"]]
    return env


def run_argv(
    container: Mapping,
    *,
    image: str,
    sources: Mapping[str, Path | None],
    env: Mapping[str, str],
    pod_security: Mapping | None = None,
    name: str | None = None,
    engine: str | None = None,
    detach: bool = False,
) -> list[str]:
    """The engine command that runs `container` as its pod would, on the host network."""
    argv = [*engine_command(engine), "run", "--rm", "--network", "host"]
    if Path(argv[0]).name.startswith("podman"):
        argv += ulimit_args()
    if detach:
        argv.append("-d")
    if name:
        argv += ["--name", name]
    argv += security_args(container, pod_security)
    argv += resource_args(container)
    argv += mount_args(container, sources)
    argv += env_args(env)
    if container.get("workingDir"):
        argv += ["--workdir", str(container["workingDir"])]
    command = list(container.get("command") or [])
    if command:
        argv += ["--entrypoint", command[0], image, *command[1:], *list(container.get("args") or [])]
    else:
        argv += [image, *list(container.get("args") or [])]
    return argv


def grant_fs_group(folders: list[Path], gid: int) -> bool:
    """What the kubelet does for a pod's `fsGroup`, on local folders: each file and folder is made
    group `gid`, group-writable, folders set-gid (so what the container creates stays in the group).

    A container running as the pod's user (not the folder's owner) can then write the folders it is
    given. False when this process may not change the group (not root, not a member): the caller
    then runs the container as the folders' owner instead."""
    try:
        for folder in folders:
            _grant(Path(folder), gid)
            for root, dirs, files in os.walk(folder):
                for name in dirs + files:
                    _grant(Path(root) / name, gid)
    except PermissionError:
        return False
    return True


def _grant(path: Path, gid: int) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return
    if st.st_gid != gid:
        os.chown(path, -1, gid)
    wanted = stat.S_IRGRP | stat.S_IWGRP | (stat.S_IXGRP | stat.S_ISGID if stat.S_ISDIR(st.st_mode) else 0)
    if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IXUSR:
        wanted |= stat.S_IXGRP
    if st.st_mode & wanted != wanted:
        os.chmod(path, stat.S_IMODE(st.st_mode) | wanted)
