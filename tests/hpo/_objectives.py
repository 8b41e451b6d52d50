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


def two_metrics_with_reports(ctx: Any) -> dict[str, float]:
    x = ctx.params["x"]
    for step in (1, 2):
        ctx.report(x * step, step)
    return {"a": x, "b": -x}


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


def ranks_agree(ctx: Any) -> dict[str, float]:
    """Gathers every rank's params and seed; fails unless all ranks got the same."""
    import torch.distributed as dist

    mine = (sorted(ctx.params.items()), ctx.seed, ctx.world_size)
    every: list = [None] * ctx.world_size
    dist.all_gather_object(every, mine)
    if any(e != mine for e in every):
        raise AssertionError(f"ranks disagree: {every}")
    return {"value": float(ctx.world_size), "rank": float(ctx.rank)}


def stop_step_per_rank(ctx: Any) -> float:
    """Reports step k at every step on every rank; writes where each rank stopped."""
    import torch
    import torch.distributed as dist
    from pathlib import Path

    step = 0
    try:
        for step in range(1, ctx.max_epochs + 1):
            t = torch.ones(1)
            dist.all_reduce(t)  # a collective every step: a rank left behind would hang
            ctx.report(float(step), step)
    finally:
        Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(ctx.run_dir) / f"stopped_rank{ctx.rank}").write_text(str(step))
    return float(step)


def misbehaving_rank(ctx: Any) -> float:
    """mode=raise: rank 1 raises; mode=kill: rank 1 SIGKILLs itself; rank 0 waits in a collective."""
    import signal
    import torch
    import torch.distributed as dist

    mode = ctx.params["mode"]
    if ctx.rank == 1 and mode == "raise":
        raise RuntimeError("rank 1 broke")
    if ctx.rank == 1 and mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    t = torch.ones(1)
    dist.all_reduce(t)
    return float(t.item())


def leaky(ctx: Any) -> dict[str, float]:
    """Reports what it inherited, then leaves state behind for the next trial."""
    import torch

    seen = {
        "pid": float(os.getpid()),
        "seed_ok": float(torch.initial_seed() == ctx.seed),
        "dtype_ok": float(torch.get_default_dtype() == torch.float32),
        "grad_ok": float(torch.is_grad_enabled()),
        "value": float(torch.rand(1).item()),
    }
    torch.set_default_dtype(torch.float64)
    torch.set_grad_enabled(False)
    torch.manual_seed(12345)
    return seen


def sleepy(ctx: Any) -> dict[str, float]:
    """Sleeps a second with reports; returns its pid and wall-clock interval."""
    import time

    t0 = time.time()
    for step in range(10):
        time.sleep(0.1)
        ctx.report(float(step), step)
    return {"value": float(ctx.params.get("x", 0.0)), "pid": float(os.getpid()), "t0": t0, "t1": time.time()}


def slow_with_pid_file(ctx: Any) -> float:
    """Writes its pid where the test can find it, then runs (reporting) for a long time."""
    import time
    from pathlib import Path

    Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(ctx.run_dir) / f"pid_{ctx.rank}").write_text(str(os.getpid()))
    for step in range(600):
        time.sleep(0.1)
        ctx.report(float(step), step)
    return 0.0


def steady(ctx: Any) -> float:
    """Five short steps, checkpointing each; resumes from its checkpoint when retried."""
    import time

    eng = FakeEngine()
    start = ctx.resume(eng)
    for step in range(start + 1, 6):
        time.sleep(0.12)
        eng.steps_trained += 1
        ctx.save_checkpoint(eng, step)
        ctx.report(float(step), step)
    return float(ctx.params.get("x", 0.0)) ** 2 + eng.steps_trained


def two_rank_checkpointing(ctx: Any) -> float:
    """Two ranks in lock-step, checkpointing every step; rank 1 leaves its pid for the test."""
    import time
    from pathlib import Path

    import torch
    import torch.distributed as dist

    Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(ctx.run_dir) / f"pid_{ctx.rank}").write_text(str(os.getpid()))
    eng = FakeEngine()
    start = ctx.resume(eng)
    for step in range(start + 1, 9):
        time.sleep(0.3)
        t = torch.ones(1)
        dist.all_reduce(t)
        eng.steps_trained += 1
        ctx.save_checkpoint(eng, step)
        ctx.report(float(step), step)
    return float(start)


def ckpt_quality(ctx: Any) -> float:
    """Checkpoints three steps; the result is the `quality` parameter."""
    eng = FakeEngine()
    for step in range(1, 4):
        eng.steps_trained += 1
        ctx.save_checkpoint(eng, step)
        ctx.report(float(step), step)
    return float(ctx.params["quality"])


def ray_placement(ctx: Any) -> dict[str, float]:
    """Writes where Ray placed this rank (pid, node, placement group); all-reduces across ranks."""
    import json
    from pathlib import Path

    import ray
    import torch
    import torch.distributed as dist

    pg = ray.util.get_current_placement_group()
    info = {
        "pid": os.getpid(),
        "node": ray.get_runtime_context().get_node_id(),
        "placement_group": pg.id.hex() if pg else None,
    }
    Path(ctx.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(ctx.run_dir) / f"placement_rank{ctx.rank}.json").write_text(json.dumps(info))
    t = torch.ones(1)
    if ctx.world_size > 1:
        dist.all_reduce(t)
    ctx.report(float(t.item()), 1)
    return {"value": float(t.item()) + ctx.params.get("x", 0.0)}


def taken_for_lost_while_running(ctx: Any) -> float:
    """Trial 0 is failed and continued behind its back, as a stalled heartbeat gets a trial
    (``HPO_TEST_STORAGE`` names the study database); then it reports and returns."""
    if ctx.number == 0:
        from optuna.trial import TrialState

        import hpo
        from hpo.execution import enqueue_continuation
        from hpo.storage import create_storage

        storage = create_storage(os.environ["HPO_TEST_STORAGE"])
        study = hpo.load_study("t", os.environ["HPO_TEST_STORAGE"])
        trial = study.trials[0]
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        enqueue_continuation(study, storage.get_trial(trial._trial_id), reason="heartbeat lost", max_attempts=None)
        ctx.report(1.0, 1)  # refused by the database: the trial is finished
    return 2.0


def diverge_after_checkpoint(ctx: Any) -> float:
    """Saves a checkpoint at step 1, then reports NaN (the report that would record it)."""
    ctx.save_checkpoint(FakeEngine(), 1)
    ctx.report(float("nan"), 1)
    return 0.0
