"""CLI of the dvc-fetch step, generated from its contract (`steps.dvc_fetch.contract.FetchInput`).

    python -m steps.dvc_fetch --registry-url .local/data-registry --data-version emotion-v1.0.0 \\
        --output-dir out/dataset --result-dir out/result
"""

from __future__ import annotations

from collections.abc import Sequence

from shared.progress import Progress
from shared.step_cli import run_cli
from steps.dvc_fetch.contract import FetchInput


def main(argv: Sequence[str] | None = None) -> None:
    from steps.dvc_fetch.core import fetch

    def core(inp: FetchInput):
        return fetch(inp, progress=Progress.from_env(unit="files"))

    run_cli("dvc-fetch", FetchInput, core, argv, prog="python -m steps.dvc_fetch")
