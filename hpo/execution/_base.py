"""The executor interface: something that runs one trial function to its end."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hpo.execution._outcome import TrialResult

__all__ = ["CONTINUE", "FAILURE_GRACE_S", "PRUNE", "START_TIMEOUT_S", "STOP", "Executor", "TrialChannel", "TrialJob"]

# A running trial's orders at each report, the same for every rank.
CONTINUE, PRUNE, STOP = 0, 1, 2

# After one rank of a multi-worker trial fails or dies, how long the others get to finish
# before the gang is killed (they may be blocked in a collective that will never complete).
FAILURE_GRACE_S = 5.0
# Starting a gang's workers and forming their process group.
START_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class TrialJob:
    """Everything needed to run one trial, as plain data (it may cross a process boundary)."""

    entrypoint: str
    study_name: str
    storage_url: str
    trial_id: int
    number: int
    params: dict[str, Any]
    engine_config: dict[str, Any]
    metric_names: list[str]
    max_epochs: int
    workers: int = 1
    device: str = "cpu"
    run_dir: Path | None = None
    seed: int = 0
    checkpoint_dir: Path | None = None
    keep_latest: int = 1
    resume_from: Path | None = None
    start_step: int = 0


class TrialChannel(Protocol):
    """How a running trial talks to its study (through the study database)."""

    def report(self, value: float, step: int) -> bool:
        """Record an intermediate value; return whether the trial should be pruned."""

    def checkpointed(self, step: int, path: str) -> None:
        """Record that the trial saved a complete checkpoint at ``step``."""

    def stopping(self) -> bool:
        """Whether the study is being interrupted."""


class Executor(abc.ABC):
    """Runs trial functions.

    Contract: :meth:`run` blocks until the trial has ended and never raises for anything
    the trial function did; it is called from up to ``concurrency`` threads at once.
    """

    #: Whether every report and checkpoint of a trial reaches the study through the
    #: ``channel`` :meth:`run` is given. False where workers write to the database
    #: themselves (Ray actors); the loop then reads a finished trial back from it.
    writes_through_channel: bool = True

    @abc.abstractmethod
    def run(self, job: TrialJob, channel: TrialChannel) -> TrialResult:
        """Run ``job``, talking to the study through ``channel``; return how it ended."""

    def close(self) -> None:
        """Release workers and other resources (default: nothing to release)."""
