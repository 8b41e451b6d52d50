"""The executor interface: something that runs one trial function to its end."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpo.execution._outcome import TrialResult

__all__ = ["Executor", "TrialJob"]


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
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(abc.ABC):
    """Runs trial functions.

    Contract: :meth:`run` blocks until the trial has ended and never raises for anything
    the trial function did; it is called from up to ``concurrency`` threads at once.
    ``report(value, step) -> bool`` records an intermediate value and returns the prune
    decision; ``stopping() -> bool`` tells whether the study is being interrupted.
    """

    @abc.abstractmethod
    def run(
        self,
        job: TrialJob,
        report: Callable[[float, int], bool],
        stopping: Callable[[], bool],
    ) -> TrialResult:
        """Run ``job`` and return how it ended."""

    def close(self) -> None:
        """Release workers and other resources (default: nothing to release)."""
