"""One rank of a trial gang on a Ray cluster: the body of a Ray actor.

The actor joins its gang's process group once, then runs trial after trial, like a
worker process of the local executor (:mod:`hpo.execution._worker`). Rank 0 reports
straight to the study database and asks the study's pruner there; each of its decisions
is broadcast to every rank by :class:`~hpo.execution._worker.RankChannel`, so all ranks
leave a pruned trial at the same step.

This module does not import Ray: :mod:`hpo.execution._ray` turns :class:`RankActor` into
an actor class.
"""

from __future__ import annotations

import gc
import os
import socket
import threading
from datetime import timedelta
from typing import Any

from hpo.execution._base import CONTINUE, PRUNE, STOP, TrialJob
from hpo.execution._outcome import TrialResult

__all__ = ["RankActor"]


class _StudyReporter:
    """Rank 0's link to the study database for one trial: report, prune, checkpoint.

    The study is loaded at the first report, so trials that never report cost no query.
    """

    def __init__(self, actor: RankActor, job: TrialJob) -> None:
        self.actor, self.job = actor, job
        self._trial: Any = None

    @property
    def trial(self) -> Any:
        if self._trial is None:
            import optuna

            # A random sampler: building the Trial must not run the study's sampler here.
            study = optuna.load_study(
                study_name=self.job.study_name,
                storage=self.actor.study_storage(self.job.storage_url),
                sampler=optuna.samplers.RandomSampler(),
                pruner=self.actor.study_pruner(),
            )
            self._trial = optuna.trial.Trial(study, self.job.trial_id)
        return self._trial

    def ask(self, value: float, step: int) -> int:
        from hpo.execution._study import report

        prune = report(self.trial, value, step)
        if self.actor.stop.is_set():
            return STOP
        return PRUNE if prune else CONTINUE

    def checkpointed(self, step: int, path: str) -> None:
        from hpo.execution._resume import CHECKPOINT_ATTR

        self.trial.set_user_attr(CHECKPOINT_ATTR, {"step": step, "path": path})


class RankActor:
    """One rank of a gang; its methods are called by :class:`~hpo.execution._ray.RayExecutor`.

    Args:
        rank: This actor's rank in the gang.
        world_size: Actors in the gang.
        spec: The study spec as JSON data (rank 0 builds the study's pruner from it).
        device: ``cpu`` or ``cuda`` (Ray sets ``CUDA_VISIBLE_DEVICES`` to this actor's GPUs).
        threads: Torch intra-op threads (the CPUs of the actor's bundle).
    """

    def __init__(self, rank: int, world_size: int, spec: dict[str, Any], device: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.rank, self.world_size = rank, world_size
        self.device = "cuda:0" if device == "cuda" else "cpu"
        self.spec = spec
        self.group: Any = None
        self.stop = threading.Event()
        self._storage: Any = None
        self._pruner: Any = None
        import hpo.execution._worker  # noqa: F401 - imported now, so frozen below

        gc.freeze()  # long-lived objects out of the per-trial collections (see _worker.py)

    def rendezvous(self) -> tuple[str, int]:
        """Rank 0: the address (this node's IP) and a free port for the process group."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        return ray.util.get_node_ip_address(), port

    def join(self, master_addr: str, master_port: int, timeout_s: float) -> None:
        """Form the gang's process group (gloo on CPU, NCCL on CUDA); blocks until all joined."""
        if self.world_size == 1:  # a 1-worker trial trains without a process group
            return
        import torch
        import torch.distributed as dist

        os.environ.update(
            RANK=str(self.rank),
            LOCAL_RANK="0",
            WORLD_SIZE=str(self.world_size),
            MASTER_ADDR=master_addr,
            MASTER_PORT=str(master_port),
        )
        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(0)
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            init_method=f"tcp://{master_addr}:{master_port}",
            rank=self.rank,
            world_size=self.world_size,
            timeout=timedelta(seconds=timeout_s),
        )
        # Decisions travel on gloo whatever the training backend: small, CPU-side messages.
        self.group = dist.new_group(backend="gloo") if cuda else dist.group.WORLD

    def run(self, job: TrialJob) -> TrialResult:
        """Run one trial on this rank; rank 0 reports to the study database."""
        from hpo.execution._worker import RankChannel, output_to, run_trial_on_rank

        self.stop.clear()
        reporter = _StudyReporter(self, job) if self.rank == 0 else None
        channel = RankChannel(
            self.rank,
            self.world_size,
            self.group,
            ask=reporter.ask if reporter else None,
            on_checkpoint=reporter.checkpointed if reporter else None,
        )
        log = job.run_dir / f"rank_{self.rank}.log" if job.run_dir else None
        with output_to(log):
            return run_trial_on_rank(job, channel, self.rank, self.world_size, self.device)

    def request_stop(self) -> None:
        """Make rank 0's next decision STOP (the study is being interrupted)."""
        self.stop.set()

    def shutdown(self) -> None:
        """Leave the process group and close the database connections."""
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
        if self._storage is not None:
            self._storage.engine.dispose()

    def study_storage(self, url: str) -> Any:
        """The study database (opened once per actor)."""
        if self._storage is None:
            from hpo.storage import create_storage

            self._storage = create_storage(url)
        return self._storage

    def study_pruner(self) -> Any:
        """The study's pruner, built from the spec as the study loop builds it."""
        if self._pruner is None:
            from hpo.pruning import create_pruner
            from hpo.spec import StudySpec

            self._pruner = create_pruner(StudySpec.model_validate(self.spec))
        return self._pruner
