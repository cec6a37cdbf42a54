"""CLI of the hpo step, generated from its contract (`steps.hpo.contract`).

`python -m steps.hpo --tokenized-dir DIR ...` runs a search (flags: the fields of `HpoInput`);
`python -m steps.hpo result --workflow-uid UID --result-dir DIR` writes the result of the newest
finished search of a workflow run (for a search that ran as a KubeRay RayJob);
`python -m steps.hpo reproduce --run-id RUN [--tokenized-dir DIR]` trains one trial again from its
MLflow child run (its data fetched and tokenized again from what the run records, or the given
DIR) and reports the difference per epoch.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from shared.progress import Progress
from shared.settings import Settings
from shared.step_cli import run_cli
from steps.hpo.contract import HpoInput, HpoResultQuery

PROG = "python -m steps.hpo"


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["result"]:
        from steps.hpo.core import find_result

        run_cli(
            "hpo",
            HpoResultQuery,
            lambda q: find_result(q.workflow_uid, Settings()),
            argv[1:],
            prog=f"{PROG} result",
        )
        return
    if argv[:1] == ["reproduce"]:
        from steps.hpo.reproduce import ReproduceInput, reproduce

        run_cli("hpo", ReproduceInput, lambda q: reproduce(q, Settings()), argv[1:], prog=f"{PROG} reproduce")
        return
    from steps.hpo.core import run_search

    def core(inp: HpoInput):
        return run_search(inp, Settings(), progress=Progress.from_env(unit="trial epochs"))

    run_cli("hpo", HpoInput, core, argv, prog=PROG)
