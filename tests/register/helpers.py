"""Plain helpers shared by the register tests and their fixtures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

LABEL_IDS = {"sadness": 0, "joy": 1, "love": 2, "anger": 3, "fear": 4, "surprise": 5}


@dataclass
class Trial:
    """One child run to create: its model dir (None = no model logged), status and metrics."""

    model_dir: Path | None
    val_loss: float
    status: str = "FINISHED"
    params: dict | None = None


@dataclass
class Search:
    parent_run_id: str
    child_run_ids: list[str]


def unique_model_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
