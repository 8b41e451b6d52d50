"""The worker process: joins its trial's process group once, then runs trial after trial.

Every rank receives the same job (parameters sampled once by the orchestrator). Rank 0
alone talks to the orchestrator during a trial; each prune/stop decision it receives is
broadcast to all ranks over a gloo group, so every rank leaves at the same step and no
collective is left waiting.
"""

from __future__ import annotations

import gc
import os
import random
import signal
import sys
import traceback
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator

from hpo.execution._base import CONTINUE, PRUNE, STOP, TrialChannel, TrialJob
from hpo.execution._outcome import Outcome, TrialResult, classify

__all__ = ["RankChannel", "output_to", "run_trial_on_rank", "worker_main"]



def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the orchestrator dies (no orphans)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RankChannel(TrialChannel):
    """What a rank's trial function talks to: rank 0 asks the orchestrator (``ask``) for
    each decision; every rank gets the same answer by broadcast over ``group``."""

    def __init__(
        self,
        rank: int,
        world_size: int,
        group: Any,
        ask: Callable[[float, int], int] | None,
        on_checkpoint: Callable[[int, str], None] | None,
    ) -> None:
        self.rank, self.world_size, self.group = rank, world_size, group
        self.ask, self.on_checkpoint = ask, on_checkpoint
        self.stopped = False

    def _decide(self, value: float, step: int) -> int:
        decision = self.ask(value, step) if self.rank == 0 and self.ask is not None else CONTINUE
        if self.world_size > 1:
            import torch.distributed as dist

            box = [decision]
            dist.broadcast_object_list(box, src=0, group=self.group)
            decision = box[0]
        return decision

    def report(self, value: float, step: int) -> bool:
        decision = self._decide(value, step)
        self.stopped = decision == STOP
        return decision == PRUNE

    def checkpointed(self, step: int, path: str) -> None:
        if self.rank == 0 and self.on_checkpoint is not None:
            self.on_checkpoint(step, path)

    def stopping(self) -> bool:
        return self.stopped


@contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """Send this process's stdout/stderr (C-level too) to ``path`` for the block."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab", buffering=0) as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _fresh_state(seed: int) -> None:
    """Each trial starts alike: same seeds on every rank, no memory of the last trial."""
    import numpy as np
    import torch

    gc.collect()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    # Not torch.manual_seed: where CUDA is not initialized, it formats the stack to queue
    # a lazy CUDA seeding, every call (0.5 ms, a third of a trivial trial's worker time).
    torch.default_generator.manual_seed(seed)
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_trial_on_rank(job: TrialJob, channel: RankChannel, rank: int, world_size: int, device: str) -> TrialResult:
    """Run ``job``'s function on this rank from a clean state and classify the outcome."""
    from hpo.execution._context import settle_interruption
    from hpo.execution._inprocess import context_for
    from hpo.spec import load_entrypoint

    _fresh_state(job.seed)
    ctx = context_for(job, channel, rank=rank, world_size=world_size, device=device)
    returned: Any = None
    exc: BaseException | None = None
    try:
        returned = load_entrypoint(job.entrypoint)(ctx)
    except BaseException as e:  # noqa: BLE001 - classify decides
        exc = e
    exc = settle_interruption(ctx, exc, channel.stopped)
    result = classify(returned, exc, job.metric_names)
    if result.outcome is Outcome.FAIL and exc is not None:
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    return result


def _asker(conn: Any) -> Callable[[float, int], int]:
    def ask(value: float, step: int) -> int:
        conn.send(("report", value, step))
        return int(conn.recv())

    return ask


def _checkpoint_sender(conn: Any) -> Callable[[int, str], None]:
    return lambda step, path: conn.send(("checkpointed", step, path))


def worker_main(
    fd: int,
    rank: int,
    world_size: int,
    port: int,
    gpu_ids: tuple[int, ...],
    threads: int,
    pg_timeout_s: float,
) -> None:
    """Body of one worker process: join the process group, connect, then run trials."""
    from multiprocessing.connection import Connection

    _die_with_parent()
    conn = Connection(fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides how to stop
    if gpu_ids:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpu_ids))
    if world_size > 1:  # a 1-worker trial trains without a process group
        os.environ.update(
            RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    device = "cuda:0" if gpu_ids else "cpu"
    group = None
    if world_size > 1:
        if gpu_ids:
            torch.cuda.set_device(0)
        dist.init_process_group(
            backend="nccl" if gpu_ids else "gloo",
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=pg_timeout_s),
        )
        # Decisions travel on gloo whatever the training backend: small, CPU-side messages.
        group = dist.new_group(backend="gloo") if gpu_ids else dist.group.WORLD
    # Everything imported so far lives as long as the worker: keep it out of the per-trial
    # collections, which then cost ~1 ms instead of ~100 ms with torch loaded.
    gc.freeze()
    conn.send(("ready", rank))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        if msg[0] == "exit":
            break
        job: TrialJob = msg[1]
        log = job.run_dir / f"rank_{rank}.log" if job.run_dir else None
        channel = RankChannel(rank, world_size, group, ask=_asker(conn), on_checkpoint=_checkpoint_sender(conn))
        with output_to(log):
            result = run_trial_on_rank(job, channel, rank, world_size, device)
        conn.send(("done", rank, result))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    a = sys.argv[1:]
    worker_main(
        int(a[0]),
        rank=int(a[1]),
        world_size=int(a[2]),
        port=int(a[3]),
        gpu_ids=tuple(int(g) for g in a[4].split(",") if g),
        threads=int(a[5]),
        pg_timeout_s=float(a[6]),
    )
