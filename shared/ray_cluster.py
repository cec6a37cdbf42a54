"""Joining an existing Ray cluster (`--ray-address`): a fast pre-flight and a connect helper.

`ray.init(address=...)` against a wrong address retries for a long time and then fails with a
message about GCS internals. The HPO step instead checks first that something answers on the
address, and raises a `StepError` naming it, before any data is loaded or any MLflow run opened.

Accepted addresses (what `ray.init` accepts):
- `None`, `""` or `local`: start a Ray instance inside this process (the embedded default);
- `auto`: the cluster in `RAY_ADDRESS`, else the one `ray start` left on this machine
  (`ray job submit` sets `RAY_ADDRESS` for its entrypoint, so the step just works there);
- `HOST:PORT`: the head's GCS address (`ray start --head --port 6379` -> `head:6379`);
- `ray://HOST:PORT`: Ray Client (port 10001 by default).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from shared.errors import StepError, TransientError

log = logging.getLogger(__name__)

GCS_DEFAULT_PORT = 6379
CLIENT_DEFAULT_PORT = 10001
LOCAL_ADDRESSES = frozenset({"", "local"})


@dataclass(frozen=True)
class RayAddress:
    """A remote cluster's address, split for the reachability check."""

    address: str
    host: str
    port: int
    client: bool  # ray:// (Ray Client) rather than a GCS address


def parse_ray_address(address: str) -> RayAddress:
    """`head:6379` or `ray://head:10001` -> RayAddress; StepError naming the address otherwise."""
    text = address.strip()
    if text.startswith(("http://", "https://")):
        raise StepError(
            f"Ray address {address!r} is a dashboard/job-submission URL; --ray-address needs the "
            f"cluster's GCS address (HOST:{GCS_DEFAULT_PORT}) or a Ray Client address "
            f"(ray://HOST:{CLIENT_DEFAULT_PORT}). To run the step on the cluster instead, use "
            "`ray job submit --address URL -- python -m steps.hpo ...`"
        )
    client = text.startswith("ray://")
    parsed = urlparse(text if client else f"//{text}")
    try:
        port = parsed.port
    except ValueError:
        raise StepError(f"Ray address {address!r}: the port is not a number in 0-65535") from None
    if not parsed.hostname or (parsed.path not in ("", "/")):
        raise StepError(f"Ray address {address!r} is not HOST:PORT or ray://HOST:PORT")
    if port is None:
        port = CLIENT_DEFAULT_PORT if client else GCS_DEFAULT_PORT
    return RayAddress(address=text, host=parsed.hostname, port=port, client=client)


def resolve_ray_address(address: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The address to join, or None for an in-process Ray. `auto` prefers `RAY_ADDRESS`."""
    if address is None or address.strip() in LOCAL_ADDRESSES:
        return None
    address = address.strip()
    if address == "auto":
        env = os.environ if environ is None else environ
        return env.get("RAY_ADDRESS") or "auto"
    return address


def check_ray_address(address: str, timeout_s: float = 5.0) -> RayAddress | None:
    """Raise TransientError naming the address unless a TCP connection to it succeeds.

    `auto` without `RAY_ADDRESS` is left to Ray, which looks for a cluster on this machine.
    """
    if address == "auto":
        return None
    target = parse_ray_address(address)
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout_s):
            pass
    except socket.gaierror:
        raise StepError(f"Ray cluster at {target.address}: host {target.host!r} does not resolve") from None
    except TimeoutError:
        raise TransientError(
            f"Ray cluster at {target.address} is unreachable (no answer in {timeout_s:g}s)"
        ) from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise TransientError(
            f"Ray cluster at {target.address} is unreachable ({reason}); is the head running "
            f"(`ray start --head --port {target.port}`) and is --ray-address right?"
        ) from None
    return target


def connect(address: str | None, *, timeout_s: float = 5.0, **init_kwargs: Any):
    """Pre-flight the address, then `ray.init` (local when address is None/local).

    Returns Ray's context. Extra keyword arguments go to `ray.init` (e.g. `num_cpus` for a local
    instance, `runtime_env`). Already connected: returns without re-initialising.
    """
    import ray

    resolved = resolve_ray_address(address)
    if resolved is not None:
        check_ray_address(resolved, timeout_s=timeout_s)
    if ray.is_initialized():
        return ray.get_runtime_context()
    try:
        context = ray.init(address=resolved, **init_kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        where = resolved or "a local Ray instance"
        raise StepError(f"cannot join Ray cluster at {where}: {exc}") from None
    if resolved is not None:
        log.info(
            "joined Ray cluster at %s: %d node(s), resources %s",
            resolved, len(alive_nodes()), ray.cluster_resources(),
        )  # fmt: skip
    return context


def alive_nodes() -> list[dict[str, Any]]:
    """Node id, address and resources of each live node of the connected cluster."""
    import ray

    return [
        {"node_id": n["NodeID"], "address": n.get("NodeManagerAddress"), "resources": n.get("Resources", {})}
        for n in ray.nodes()
        if n.get("Alive")
    ]


# Ray Tune copies these from the driver's `os.environ` into every trial actor's `runtime_env`,
# and Ray's runtime-env agent logs runtime envs in clear text (runtime_env_agent.log), and shows
# them in the dashboard. Trials get them anyway from their node's environment (a pod's Secret,
# or the local raylet, which inherited the driver's environment when Ray started).
CREDENTIAL_ENV_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
)  # fmt: skip


@contextmanager
def credentials_hidden_from_ray_tune() -> Iterator[None]:
    """Run `tuner.fit()` inside this: Ray Tune does not copy the S3 credentials into the trials'
    runtime env (and so into Ray's logs) meanwhile.

    Tune reads them from Python's `os.environ`; the AWS SDK of the search's storage (pyarrow's S3
    filesystem, C++) and child processes read the process environment. Python documents that
    `os.putenv` changes the latter without updating the former, so meanwhile the credentials are
    left out of `os.environ` only: the storage keeps working, Tune sees nothing to copy. Python code
    of this process that reads `os.environ` (boto3) does not find them until the block ends.
    """
    hidden = {k: os.environ[k] for k in CREDENTIAL_ENV_VARS if k in os.environ}
    for key, value in hidden.items():
        del os.environ[key]  # unsets it in the process environment too...
        os.putenv(key, value)  # ...where it is put back, for the SDKs and child processes
    try:
        yield
    finally:
        for key, value in hidden.items():
            os.environ.setdefault(key, value)
