"""`python -m steps.register`: the CLI generated from `steps.register.contract.RegisterInput`."""

from __future__ import annotations

import os
from collections.abc import Sequence

from shared.progress import Progress
from shared.settings import Settings
from shared.step_cli import run_cli
from steps.register.contract import RegisterInput


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep pod logs readable
    from steps.register.core import register

    prog = "python -m steps.register"

    def core(inp: RegisterInput):
        return register(inp, Settings(), progress=Progress.from_env(unit="rows evaluated"))

    run_cli("register", RegisterInput, core, argv, prog=prog)
