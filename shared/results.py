"""Result JSON files: the small typed contract each step hands to the workflow.

Every step writes one result file whose top-level fields become Argo output parameters
(the workflow reads `<field>` files written next to it, see `write_result`).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see the old file or the whole new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return "" if value is None else str(value)


def write_result(result: BaseModel, path: Path, params_dir: Path | None = None) -> None:
    """Write the result JSON, and optionally one plain-text file per field for Argo outputs.

    Argo output parameters read a file each (`valueFrom.path`); the field name in kebab case
    is the file name, mirroring the Python field name in snake case.
    """
    data = result.model_dump(mode="json")
    atomic_write_text(Path(path), json.dumps(data, indent=2, sort_keys=True) + "\n")
    if params_dir is not None:
        for key, value in data.items():
            atomic_write_text(Path(params_dir) / key.replace("_", "-"), _param_text(value))
