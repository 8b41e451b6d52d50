"""Trial functions used by the tests (importable as ``tests.hpo._objectives:NAME``)."""

from __future__ import annotations

import os
from typing import Any


def fails_when_negative(ctx: Any) -> float:
    x = ctx.params["x"]
    if x < 0:
        raise RuntimeError(f"negative x={x}")
    return x


def nan_when_negative(ctx: Any) -> float:
    return float("nan") if ctx.params["x"] < 0 else ctx.params["x"]


def missing_metric(ctx: Any) -> dict[str, float]:
    return {"something_else": 1.0}


def record_engine_config(ctx: Any) -> float:
    return float(ctx.engine_config["gradient_accumulation_steps"]) + ctx.params.get("x", 0.0)


def report_nan(ctx: Any) -> float:
    ctx.report(float("nan"), 1)
    return 0.0


def slow(ctx: Any) -> float:
    import time

    for step in range(200):
        time.sleep(0.05)
        ctx.report(float(step), step)
    return 0.0


def pid(ctx: Any) -> dict[str, float]:
    return {"value": ctx.params.get("x", 0.0), "pid": float(os.getpid())}


class FakeEngine:
    """Stands in for an engine: its whole state is the number of steps trained."""

    def __init__(self) -> None:
        self.steps_trained = 0

    def save_checkpoint(self, path) -> None:
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "state").write_text(str(self.steps_trained))

    def load_checkpoint(self, path) -> None:
        from pathlib import Path

        self.steps_trained = int((Path(path) / "state").read_text())


def crash_once_at_3(ctx: Any) -> dict[str, float]:
    """Trains 5 steps; the first attempt (not resumed) crashes after checkpointing step 3."""
    eng = FakeEngine()
    start = ctx.resume(eng)
    for step in range(start + 1, ctx.max_epochs + 1):
        eng.steps_trained += 1
        ctx.save_checkpoint(eng, step)
        ctx.report(float(step), step)
        if step == 3 and ctx.resume_from is None:
            raise RuntimeError("node lost")
    return {"value": float(eng.steps_trained), "start": float(start)}
