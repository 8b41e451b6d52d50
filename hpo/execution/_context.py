"""What a training function sees of its trial."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpo.exceptions import HpoError, TrialPruned

__all__ = ["TrialContext", "TrialDiverged", "TrialInterrupted"]


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

    def report(self, value: float, step: int) -> None:
        """Record an intermediate value of the study's (first) metric at ``step``.

        Raises:
            TrialPruned: The pruner decided to stop this trial; let it propagate.
            TrialDiverged: ``value`` is NaN or infinite; the trial is marked failed.
            TrialInterrupted: The study is being stopped.
        """
        value = float(value)
        if not math.isfinite(value):
            raise TrialDiverged(f"reported {value} at step {step}")
        if self._stopping is not None and self._stopping():
            raise TrialInterrupted("study interrupted")
        if self._pending is not None and self._pending[0] <= int(step):
            # Recorded just before the report it goes with: the pruner, which decides on that
            # report, sees that the trial can be paused and resumed from this step.
            self._record_checkpoint(*self._pending)
        prune = self._report is not None and self._report(value, int(step))
        self._last_reported = max(self._last_reported, int(step))
        if prune:
            raise TrialPruned(f"pruned at step {step} (value {value:.6g})")

    def resume(self, eng: Any) -> int:
        """Load :attr:`resume_from` into ``eng`` (every rank); return the step to continue after.

        A checkpoint that does not load (corrupt, truncated, from another model) is reported
        on stderr and the trial starts from scratch: step 0.
        """
        if self.resume_from is None:
            return 0
        try:
            eng.load_checkpoint(self.resume_from)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - DCP's CheckpointException is a BaseException
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
