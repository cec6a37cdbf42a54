"""What tests that start Ray nodes on this machine share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

NODE_MEMORY = {"object_store_memory": 100 * 1024**2}


def node_args(num_cpus: int) -> dict[str, Any]:
    """One node's arguments: its CPUs, a small object store, and its own dashboard-agent port.

    Every node on one machine would otherwise take the default agent port (52365): only the
    first binds it, the others serve no HTTP, and the job API ("No available agent to submit
    job") fails once the node that got it is gone or the port is still held by an earlier cluster.
    """
    from shared.processes import free_port

    return {"num_cpus": num_cpus, **NODE_MEMORY, "dashboard_agent_listen_port": free_port()}


@contextmanager
def node_environment(values: dict[str, str]) -> Iterator[None]:
    """os.environ with `values` while Ray node processes are spawned (they inherit it), then back."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def local_cluster(
    node_env: dict[str, str], head_cpus: int, worker_cpus: tuple[int, ...] = ()
) -> tuple[Any, str, list[Any]]:
    """A Ray head with the dashboard on a free port plus worker nodes, all on this machine and
    spawned with `node_env`; this process does not connect. (cluster, dashboard URL, workers)."""
    from ray.cluster_utils import Cluster

    from shared.processes import free_port

    dashboard_port = free_port()
    with node_environment(node_env):
        cluster = Cluster(
            initialize_head=True,
            connect=False,
            head_node_args={
                **node_args(head_cpus), "include_dashboard": True, "dashboard_host": "127.0.0.1",
                "dashboard_port": dashboard_port,
            },
        )  # fmt: skip
        workers = [cluster.add_node(**node_args(n)) for n in worker_cpus]
    return cluster, f"http://127.0.0.1:{dashboard_port}", workers
