"""TensorBoard scalars per trial, written with ``torch.utils.tensorboard``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.execution import Outcome
from hpo.reporting import Progress

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.execution import TrialResult
    from hpo.spec import StudySpec

__all__ = ["TensorBoardProgress"]


class TensorBoardProgress(Progress):
    """One TensorBoard run per trial under ``log_dir/trial_<number>``.

    Each report becomes a scalar of the study's first metric at its step; when the trial
    ends, its final metrics are written as ``final/<name>`` scalars and, for a completed
    trial, its parameters and metrics go to TensorBoard's HParams view. Point TensorBoard
    at ``log_dir`` to compare trials: ``tensorboard --logdir runs/tb``.

    Args:
        log_dir: The directory for this study's runs (created if missing).

    Raises:
        ImportError: The ``tensorboard`` package is not installed (``pip install 'hpo[tracking]'``).
    """

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError(
                f"TensorBoardProgress needs tensorboard: pip install 'hpo[tracking]' ({e})"
            ) from None
        self._writer_cls = SummaryWriter
        self.log_dir = Path(log_dir)
        self._metric = "value"
        self._writers: dict[int, Any] = {}
        self._params: dict[int, dict[str, Any]] = {}
        self._seen: dict[int, set[int]] = {}  # steps written from reports, per trial
        self._lock = threading.Lock()

    def start(self, spec: StudySpec, done: int, study: optuna.Study) -> None:
        """Remember the metric that reports are values of."""
        self._metric = spec.metric_names[0]

    def _writer(self, number: int) -> Any:
        with self._lock:
            if number not in self._writers:
                self._writers[number] = self._writer_cls(log_dir=str(self.log_dir / f"trial_{number}"))
            return self._writers[number]

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """Open the trial's run and write its parameters as text."""
        with self._lock:
            self._params[number] = dict(params)
        lines = "\n".join(f"    {k}: {v!r}" for k, v in params.items()) or "    (none)"
        self._writer(number).add_text("params", lines, 0)

    def trial_reported(self, number: int, step: int, value: float) -> None:
        """A scalar of the study's metric at ``step``."""
        self._writer(number).add_scalar(self._metric, value, step)
        with self._lock:
            self._seen.setdefault(number, set()).add(step)

    def trial_finished(self, trial: FrozenTrial, result: TrialResult) -> None:
        """Final metrics, the state and (for completed trials) the HParams entry; closes the run."""
        w = self._writer(trial.number)
        with self._lock:
            seen = self._seen.pop(trial.number, set())
        # Steps no report showed here: rank 0 on Ray writes them to the database directly, and
        # a continuation starts with the curve of the trial it continues.
        for s, v in sorted(trial.intermediate_values.items()):
            if s not in seen:
                w.add_scalar(self._metric, v, s)
        step = max(trial.intermediate_values, default=0)
        metrics = {k: float(v) for k, v in (result.metrics or {}).items()}
        for name, value in metrics.items():
            w.add_scalar(f"final/{name}", value, step)
        w.add_text("state", result.outcome.value, step)
        if trial.values is not None and result.outcome is Outcome.COMPLETE:
            with self._lock:
                params = self._params.get(trial.number, trial.params)
            # HParams takes numbers, strings and booleans; other choices (None) as text.
            hparams = {k: v if isinstance(v, (int, float, str, bool)) else repr(v) for k, v in params.items()}
            w.add_hparams(hparams, {f"hparam/{k}": v for k, v in metrics.items()}, run_name=".")
        w.close()
        with self._lock:
            self._writers.pop(trial.number, None)
            self._params.pop(trial.number, None)

    def close(self) -> None:
        """Flush and close the runs of trials that did not finish."""
        with self._lock:
            writers, self._writers = list(self._writers.values()), {}
        for w in writers:
            w.close()
