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
