"""A step in its image (`run_local --engine podman|docker`): the template's container as its pod runs it.

The container gets the template's command and args as written (no path rewriting: the paths are
the container's own), only the environment the template declares (refs from `--values-dir`) plus
the runner's own variables and `--pass-env` names, and the pod's user, security context and
resource limits (`containers.run_argv`). Its file system:

- `/tmp` is the task's `fs/tmp`: every artifact and output parameter path of the compiled
  workflow lives under it, so the runner reads outputs and links inputs exactly as with processes;
- the local dir (`EMOTION_LOCAL_DIR`: runs, cache, the SQLite MLflow store, the DVC registry, the
  search's storage) is mounted at its own path, so input artifacts (links into other tasks' folders
  or the cache) and the local defaults resolve inside the container as outside;
- each volume mount is its local folder (`pod.volume_sources`), an in-memory `emptyDir` a tmpfs;
- `--volume SRC:DST[:ro]` adds a host folder (a base model or data outside the local dir).

A container runs as the user its pod's securityContext names (the workflow's spec, the template's,
the container's, the later one winning), as on a cluster: the pod's `fsGroup` is applied to the
folders it writes (the task's, the local dir: group-owned and group-writable, as the kubelet does
for volumes), and the train image trusts repositories of any owner (git's `safe.directory`). A pod
that names no user, or a runner that may not change the folders' group (not root), runs the
container as the owner of the local dir (`--user UID:GID`, as `docker run --user $(id -u)` is
used). Each attempt is a named container, removed at its end whatever happened (an interrupt or a
deadline kills the engine client, not the container).

The deploy step runs on the host (`--on-host deploy`): its `local` target starts the server as a
daemon of the step, and its `container` target starts the serving image with the host's engine.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.local_runner.errors import WorkflowError
from shared.containers import engine_command, grant_fs_group, run_argv

ENGINES = ("process", "podman", "docker")
SCRIPT_PATH = "/tmp/.argo-script"  # a script template's source, in the task's /tmp mount


@dataclass
class Engine:
    """The container engine a run uses and what every container of the run mounts."""

    name: str  # podman | docker
    local_dir: Path
    env: dict[str, str]  # what every step gets beneath its declared env: the runner's own, --pass-env
    volumes: list[str] = field(default_factory=list)  # --volume SRC:DST[:ro]
    on_host: set[str] = field(default_factory=set)  # --on-host TASK: these tasks run as processes

    def for_task(self, task: str, template: str) -> Engine | None:
        """This engine, or None for a task (or template) named with --on-host."""
        return None if task in self.on_host or template in self.on_host else self

    def command(self) -> list[str]:
        return engine_command(self.name)

    def has_image(self, image: str) -> bool:
        done = subprocess.run([*self.command(), "image", "inspect", image], capture_output=True)
        return done.returncode == 0

    def remove(self, name: str) -> None:
        subprocess.run([*self.command(), "rm", "-f", "-i", name], capture_output=True)


def parse_volume(text: str) -> tuple[Path, str, bool]:
    """`SRC:DST[:ro|rw]` -> (host folder, container path, read only)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise WorkflowError(f"--volume {text!r}: expected HOST_PATH:/CONTAINER/PATH[:ro]")
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        raise WorkflowError(f"--volume {text!r}: the mode is ro or rw, not {parts[2]!r}")
    source = Path(parts[0]).expanduser().resolve()
    if not source.exists():
        raise WorkflowError(f"--volume {text!r}: {source} does not exist")
    return source, parts[1], len(parts) == 3 and parts[2] == "ro"


def container_name(task: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in task).strip("-.")[:40] or "step"
    return f"emotion-local-{safe}-{uuid.uuid4().hex[:8]}"


def mounts(
    engine: Engine, fs: Path, volume_sources: Mapping[str, Path], memory_volumes: set[str]
) -> list[dict]:
    """The container's volumeMounts and the local source of each (None: a tmpfs)."""
    entries: list[tuple[str, Path | None, bool]] = [("/tmp", fs / "tmp", False)]
    local = engine.local_dir.resolve()
    entries.append((str(local), local, False))
    for mount_path, source in volume_sources.items():
        entries.append((mount_path, None if mount_path in memory_volumes else source, False))
    for text in engine.volumes:
        source, target, read_only = parse_volume(text)
        entries.append((target, source, read_only))
    return [{"mountPath": path, "source": source, "readOnly": ro} for path, source, ro in entries]


def step_argv(
    engine: Engine,
    body: Mapping,
    command: list[str],
    args: list[str],
    *,
    image: str,
    env: Mapping[str, str],
    volume_mounts: list[dict],
    name: str,
    pod_security: Mapping | None = None,
) -> list[str]:
    """`podman run ...` of the main container: substituted command/args, its declared shape."""
    container = copy.deepcopy(dict(body))
    container["command"] = command
    container["args"] = args
    security = {**(pod_security or {}), **(container.get("securityContext") or {})}
    owner = engine.local_dir.stat()
    writable = [Path(m["source"]) for m in volume_mounts if m["source"] is not None and not m["readOnly"]]
    if security.get("runAsUser") is None or (
        security["runAsUser"] != owner.st_uid
        and not grant_fs_group(
            writable, int(security.get("fsGroup", security.get("runAsGroup", owner.st_gid)))
        )
    ):
        security.update(runAsUser=owner.st_uid, runAsGroup=owner.st_gid)
        security.pop("runAsNonRoot", None)
    container["securityContext"] = security
    container["volumeMounts"] = [
        {"mountPath": m["mountPath"], "readOnly": m["readOnly"], "name": m["mountPath"]}
        for m in volume_mounts
    ]
    sources = {m["mountPath"]: m["source"] for m in volume_mounts}
    return run_argv(container, image=image, sources=sources, env=env, name=name, engine=engine.name)


def memory_volumes(template: Mapping, workflow_volumes: Mapping[str, dict]) -> set[str]:
    """Mount paths of `emptyDir: {medium: Memory}` volumes (a tmpfs in a container, as in a pod)."""
    volumes = {**workflow_volumes, **{v["name"]: v for v in template.get("volumes") or []}}
    body = template.get("container") or template.get("script") or {}
    found = set()
    for mount in body.get("volumeMounts") or []:
        empty = (volumes.get(mount["name"]) or {}).get("emptyDir")
        if isinstance(empty, dict) and empty.get("medium") == "Memory":
            found.add(mount["mountPath"])
    return found


def refuse_unsupported(template: Mapping, where: str) -> None:
    if template.get("initContainers") or template.get("sidecars"):
        raise WorkflowError(f"{where}: init containers and sidecars run only with --engine process")
