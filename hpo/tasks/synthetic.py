"""Deterministic objectives without training: for trying samplers, pruners and overheads.

``quadratic``: ``(x - 2)^2 + (y + 1)^2`` of parameters ``x`` and ``y`` (missing ones are 0),
returned at once (minimum 0). ``curve``: a learning curve that rises towards a ceiling
set by ``quality`` (in [0, 1]) over ``ctx.max_epochs`` steps, reported every step.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["curve", "quadratic"]


def quadratic(ctx: Any) -> float:
    """The trivial objective: no reports, no training."""
    x = float(ctx.params.get("x", 0.0))
    y = float(ctx.params.get("y", 0.0))
    return (x - 2.0) ** 2 + (y + 1.0) ** 2


def curve(ctx: Any) -> dict[str, float]:
    """Report ``quality * (1 - exp(-step / 3))`` at every step; return the last value."""
    quality = float(ctx.params.get("quality", 0.5))
    value = 0.0
    for step in range(1, ctx.max_epochs + 1):
        value = quality * (1.0 - math.exp(-step / 3.0))
        ctx.report(value, step)
    return {"score": value, "steps": float(ctx.max_epochs)}
