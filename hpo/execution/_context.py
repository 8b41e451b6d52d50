"""What a training function sees of its trial."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpo.exceptions import HpoError, TrialPruned

__all__ = ["TrialContext", "TrialDiverged", "TrialInterrupted", "settle_interruption"]


class TrialInterrupted(HpoError):
    """The study is stopping (Ctrl-C); raised from :meth:`TrialContext.report`."""


class TrialDiverged(HpoError):
    """A reported value was NaN or infinite: the trial fails instead of training on."""


@dataclass(kw_only=True)
class TrialContext:
    """The argument of every trial entrypoint: ``def train(ctx: TrialContext) -> float | dict``.

    Attributes:
        params: The sampled hyperparameters, identical on every rank.
        number: The trial's number within its study.
        max_epochs: The training budget (the ``max_resource`` pruners see).
        device: ``"cpu"`` or ``"cuda:<i>"`` for this rank.
        rank: This process's rank within the trial's process group.
        world_size: Processes in the trial's process group.
        engine_config: ``trial.engine`` of the study with sampled ``engine.*`` values applied.
        run_dir: A directory of this trial's own (artifacts, logs).
        seed: A seed derived from the trial number, for reproducible initialization.
        checkpoint_dir: Where :meth:`save_checkpoint` writes (None: checkpointing is off).
        resume_from: A checkpoint this trial continues from (a retry or a promotion).
        start_step: The step ``resume_from`` was saved at (0 for a fresh trial).
    """

    params: dict[str, Any]
    number: int
    max_epochs: int
    device: str = "cpu"
    rank: int = 0
    world_size: int = 1
    engine_config: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    seed: int = 0
    checkpoint_dir: Path | None = None
    keep_latest: int = 1
    resume_from: Path | None = None
    start_step: int = 0
    _checkpointed: Callable[[int, str], None] | None = field(default=None, repr=False)
    _pending: tuple[int, Path] | None = field(default=None, repr=False)
    _last_reported: int = field(default=-1, repr=False)
    _report: Callable[[float, int], bool] | None = field(default=None, repr=False)
    _stopping: Callable[[], bool] | None = field(default=None, repr=False)
    _interrupted: bool = field(default=False, repr=False)

    def report(self, value: float, step: int) -> None:
        """Record an intermediate value of the study's (first) metric at ``step``.

        Raises:
            TrialPruned: The pruner decided to stop this trial; let it propagate.
            TrialDiverged: ``value`` is NaN or infinite; the trial is marked failed.
            TrialInterrupted: The study is being stopped (not at step ``max_epochs``: after its
                last report a trial returns its result).
        """
        value = float(value)
        if not math.isfinite(value):
            raise TrialDiverged(f"reported {value} at step {step}")
        if self._pending is not None and self._pending[0] <= int(step):
            # Recorded just before the report it goes with: the pruner, which decides on that
            # report, sees that the trial can be paused and resumed from this step.
            self._record_checkpoint(*self._pending)
        prune = self._report is not None and self._report(value, int(step))
        self._last_reported = max(self._last_reported, int(step))
        if prune:
            raise TrialPruned(f"pruned at step {step} (value {value:.6g})")
        if int(step) != self.max_epochs and self.should_stop():
            # After the report, so that a continuation resumes from this step. After the last
            # report the trial has only its result left to return: that is worth more.
            raise self._interrupt()

    def _interrupt(self) -> TrialInterrupted:
        self._interrupted = True  # seen by the worker even if the trial function swallows it
        return TrialInterrupted("study interrupted")

    def resume(self, eng: Any) -> int:
        """Load :attr:`resume_from` into ``eng`` (every rank); return the step to continue after.

        A checkpoint the engine refuses before changing anything (missing, truncated,
        corrupt, from another model: ``engine.errors.CheckpointError``) is reported on
        stderr and the trial starts from scratch: step 0. A load that fails part-way
        raises, and the trial fails. The step returned can be ``max_epochs``: the trial
        resumed was stopped after its last report, and only its final evaluation remains.
        """
        from engine.errors import CheckpointError

        if self.resume_from is None:
            return 0
        try:
            eng.load_checkpoint(self.resume_from)
        except CheckpointError as e:
            print(f"hpo: trial {self.number}: checkpoint {self.resume_from} unusable ({e}); starting from scratch", file=sys.stderr)
            return 0
        self._last_reported = self.start_step  # the curve up to here came with the continuation
        return self.start_step

    def save_checkpoint(self, eng: Any, step: int) -> Path | None:
        """Save ``eng``'s full state as this trial's checkpoint at ``step`` (call on every rank).

        The checkpoint becomes the one a retry or promotion resumes from when the value
        of ``step`` is reported (at once if it already is), so a continuation does not lack
        a learning-curve point it skips. The ``keep_latest`` most recent recorded
        checkpoints of the trial are kept. Returns the path, or None when checkpointing is
        off for this study.
        """
        if self.checkpoint_dir is None:
            return None
        path = self.checkpoint_dir / f"step_{int(step)}"
        eng.save_checkpoint(path)
        if int(step) <= self._last_reported:
            self._record_checkpoint(int(step), path)
        else:
            self._pending = (int(step), path)
        return path

    def _record_checkpoint(self, step: int, path: Path) -> None:
        from hpo.execution._resume import remove_checkpoints

        self._pending = None
        if self.rank == 0:
            if self._checkpointed is not None:
                self._checkpointed(step, str(path))
            if self.checkpoint_dir is not None:
                remove_checkpoints(self.checkpoint_dir, keep_latest=self.keep_latest)

    def should_stop(self) -> bool:
        """Whether the study is stopping; long steps without reports can poll this."""
        return bool(self._stopping and self._stopping())


def settle_interruption(ctx: TrialContext, exc: BaseException | None, stopping: bool) -> BaseException | None:
    """The exception a trial's outcome is classified by, once the study may be stopping.

    A trial told to stop that returned anyway (it caught :class:`TrialInterrupted`) was
    interrupted, and so was one that failed while the study was stopping (its peers were
    stopped); a trial that returned unaware of a stop, after its last report, completed.
    """
    if isinstance(exc, TrialInterrupted):
        return exc
    if ctx._interrupted or (stopping and exc is not None):  # noqa: SLF001 - same module
        return TrialInterrupted("study interrupted")
    return exc
