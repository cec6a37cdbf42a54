"""The train image: a Ray head starts in it as uid 10001, as in the RayJob's head pod (slow)."""

from __future__ import annotations

import subprocess

import pytest

from shared.containers import run_argv
from shared.processes import free_port

pytestmark = pytest.mark.slow


def test_a_ray_head_starts_in_the_train_image_as_uid_10001(train_image):
    port = free_port()
    script = (
        f"ray start --head --port={port} --num-cpus=1 --include-dashboard=false --disable-usage-stats"
        # Right after `ray start` the head may not have reported yet ("No cluster status"): wait for it.
        f" && for i in $(seq 60); do ray status --address=127.0.0.1:{port} > /tmp/status.txt 2>&1;"
        " grep -q Resources /tmp/status.txt && break; sleep 1; done; cat /tmp/status.txt && id -u"
        " && python -c 'import torch; print(torch.__version__)'"
        " && ray stop"
    )
    container = {
        "command": ["sh", "-c", script],
        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "allowPrivilegeEscalation": False},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    argv = run_argv(container, image=train_image, sources={"/tmp": None}, env={"HOME": "/tmp"})
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.split()
    assert "10001" in lines, done.stdout[-2000:]
    assert "Resources" in done.stdout  # `ray status` reached the head
    assert any(line.startswith("2.13.0+cpu") for line in lines), done.stdout[-2000:]  # the CPU wheel
