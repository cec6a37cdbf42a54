"""The pod's shape, written once: the security contexts every pod of the product runs with.

The workflow's step pods (`pipelines/emotion_hpo.py`), the serving Deployment
(`steps/deploy/k8s_render.py`), the RayJob's head and worker pods (`steps/rayjob_manifest.py`), the
serving RayService's pods (`steps/deploy/rayservice_render.py`, through the RayJob's helpers) and
the local container runs (`shared/containers.py`, through those manifests) all take them from here.
Both images create the user `app` with this uid and gid.
"""

from __future__ import annotations

RUN_AS_USER = 10001


def pod_security_context() -> dict:
    """A pod's `securityContext`: uid/gid 10001, non-root, volumes group-owned by 10001."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(*, read_only_root: bool) -> dict:
    """A container's `securityContext`: no privileges, no capabilities; the serving container also has
    a read-only root (the steps keep a writable one: Ray and the libraries they load write beside
    their own files, and a step's writable paths are not all volumes on a cluster)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
