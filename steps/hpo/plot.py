"""A parallel-coordinates plot of the trials: one line per trial, coloured by val accuracy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def _axis_values(values: list[Any], log: bool) -> tuple[list[float], list[str]]:
    """Map one axis to [0, 1]; categorical values get evenly spaced positions."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        nums = [math.log10(v) if log and v > 0 else float(v) for v in values]
        lo, hi = min(nums), max(nums)
        span = (hi - lo) or 1.0
        fmt = (lambda x: f"{10**x:.2g}") if log else (lambda x: f"{x:.3g}")
        return [(x - lo) / span for x in nums], [fmt(lo), fmt(hi)]
    cats = sorted({str(v) for v in values})
    pos = {c: i / max(1, len(cats) - 1) for i, c in enumerate(cats)}
    return [pos[str(v)] for v in values], [cats[0], cats[-1]]


def parallel_coordinates(
    trials: list[dict[str, Any]], dimensions: list[str], log_dims: set[str], out_png: Path
) -> Path | None:
    """Draw `trials` (dicts holding the dimensions and val_accuracy) to `out_png`."""
    rows = [t for t in trials if all(d in t for d in dimensions) and t.get("val_accuracy") is not None]
    if not rows or not dimensions:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = [*dimensions, "val_accuracy"]
    columns = [_axis_values([r[d] for r in rows], d in log_dims) for d in axes]
    acc = [r["val_accuracy"] for r in rows]
    lo, hi = min(acc), max(acc)
    cmap = plt.get_cmap("viridis")
    fig, ax = plt.subplots(figsize=(2.2 * len(axes) + 1, 4.5))
    for i in range(len(rows)):
        colour = cmap((acc[i] - lo) / ((hi - lo) or 1.0))
        ax.plot(range(len(axes)), [col[0][i] for col in columns], color=colour, alpha=0.85, lw=1.5)
    for x, (_, (low, high)) in enumerate(columns):
        ax.axvline(x, color="grey", lw=0.8)
        ax.text(x, -0.08, low, ha="center", va="top", fontsize=8)
        ax.text(x, 1.04, high, ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(axes)), axes, fontsize=9)
    ax.xaxis.set_ticks_position("none")
    ax.tick_params(axis="x", pad=18)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.12)
    ax.set_title(f"{len(rows)} trials (colour: val_accuracy {lo:.3f}..{hi:.3f})")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
