"""Deterministic objectives without training: for trying samplers, pruners and overheads.

``quadratic``: ``(x - 2)^2 + (y + 1)^2`` of parameters ``x`` and ``y`` (missing ones are 0),
returned at once (minimum 0). ``curve``: a learning curve that rises towards a ceiling
set by ``quality`` (in [0, 1]) over ``ctx.max_epochs`` steps, reported every step.
``resumable_curve``: the same curve computed from a checkpointed state, so a retried or
promoted trial continues it from its checkpoint; it logs the steps it trains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["TRAINED_STEPS_FILE", "CurveState", "curve", "curve_value", "quadratic", "resumable_curve"]

TRAINED_STEPS_FILE = "trained_steps.txt"


def quadratic(ctx: Any) -> float:
    """The trivial objective: no reports, no training."""
    x = float(ctx.params.get("x", 0.0))
    y = float(ctx.params.get("y", 0.0))
    return (x - 2.0) ** 2 + (y + 1.0) ** 2


def curve_value(quality: float, steps: int, tau: float = 3.0, decline: float = 0.0) -> float:
    """``quality * (1 - exp(-steps / tau)) - decline * steps``: the curves' value after ``steps``."""
    return quality * (1.0 - math.exp(-steps / tau)) - decline * steps


def curve(ctx: Any) -> dict[str, float]:
    """Report ``quality * (1 - exp(-step / 3))`` at every step; return the last value."""
    quality = float(ctx.params.get("quality", 0.5))
    value = 0.0
    for step in range(1, ctx.max_epochs + 1):
        value = curve_value(quality, step)
        ctx.report(value, step)
    return {"score": value, "steps": float(ctx.max_epochs)}


class CurveState:
    """Stands in for an engine: its whole state is the list of steps it was trained on.

    Has the two methods :meth:`TrialContext.save_checkpoint` and :meth:`TrialContext.resume`
    use, writing a small JSON file instead of model weights.
    """

    def __init__(self) -> None:
        self.trained: list[int] = []

    def save_checkpoint(self, path: str | Path) -> None:
        """Write the state to ``path/state.json``."""
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "state.json").write_text(json.dumps(self.trained))

    def load_checkpoint(self, path: str | Path) -> None:
        """Read the state :meth:`save_checkpoint` wrote (CheckpointError, unchanged, if it cannot)."""
        from engine.errors import CheckpointError

        try:
            self.trained = [int(s) for s in json.loads((Path(path) / "state.json").read_text())]
        except (OSError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path}: {e}") from None


def resumable_curve(ctx: Any) -> dict[str, float]:
    """Train steps ``ctx.start_step + 1 .. ctx.max_epochs`` of a learning curve, resumably.

    The value after ``n`` trained steps is ``quality * (1 - exp(-n / tau)) - decline * n``
    (parameters ``quality``, default 0.5, ``tau``, default 3, and ``decline``, default 0, which
    makes a curve that peaks and falls): it is computed from the state, so a resume that lost
    the state would show as a drop in the curve. Every step is checkpointed
    before it is reported, and appended to ``ctx.run_dir / TRAINED_STEPS_FILE``.

    Returns:
        ``score`` (the last value), ``steps`` (steps in the state) and ``first_step`` (the
        first step this trial trained itself).
    """
    quality = float(ctx.params.get("quality", 0.5))
    tau = float(ctx.params.get("tau", 3.0))
    decline = float(ctx.params.get("decline", 0.0))
    state = CurveState()
    start = ctx.resume(state)
    log = Path(ctx.run_dir) / TRAINED_STEPS_FILE if ctx.run_dir is not None else None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    value = curve_value(quality, len(state.trained), tau, decline)
    for step in range(start + 1, ctx.max_epochs + 1):
        state.trained.append(step)
        if log is not None:
            with log.open("a") as f:
                f.write(f"{step}\n")
        value = curve_value(quality, len(state.trained), tau, decline)
        ctx.save_checkpoint(state, step)
        ctx.report(value, step)
    return {"score": value, "steps": float(len(state.trained)), "first_step": float(start + 1)}
