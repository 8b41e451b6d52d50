"""Several progress sinks as one: the display plus any number of loggers."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, Callable

from hpo.reporting import Progress

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.execution import TrialResult
    from hpo.spec import StudySpec

__all__ = ["CompositeProgress"]


class CompositeProgress(Progress):
    """Forwards every study event to each of ``sinks``, in order.

    A sink that raises is a broken logger, not a broken trial: it is dropped for the rest
    of the study and the others are told through :meth:`note`, so trials and the study
    loop never see its error. Thread-safe if every sink is.

    Example::

        from hpo.integrations import CompositeProgress, TensorBoardProgress
        from hpo.reporting import make_progress

        hpo.optimize(spec, progress=CompositeProgress(make_progress(), TensorBoardProgress("runs/tb")))
    """

    def __init__(self, *sinks: Progress) -> None:
        for s in sinks:
            if not isinstance(s, Progress):
                raise TypeError(f"every sink must be an hpo.reporting.Progress, but got {s!r}.")
        self._sinks = list(sinks)
        self._lock = threading.Lock()

    @property
    def sinks(self) -> list[Progress]:
        """The sinks still receiving events."""
        with self._lock:
            return list(self._sinks)

    def _each(self, call: Callable[[Progress], Any]) -> None:
        failed: list[tuple[Progress, BaseException]] = []
        for sink in self.sinks:
            try:
                call(sink)
            except Exception as e:  # noqa: BLE001 - a failing logger must not fail the study
                failed.append((sink, e))
        if not failed:
            return
        with self._lock:
            for sink, _ in failed:
                if sink in self._sinks:
                    self._sinks.remove(sink)
        for sink, e in failed:
            self.note(f"{type(sink).__name__} stopped after an error: {type(e).__name__}: {e}")

    def start(self, spec: StudySpec, done: int, study: optuna.Study) -> None:
        """Forwarded to every sink."""
        self._each(lambda s: s.start(spec, done, study))

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """Forwarded to every sink."""
        self._each(lambda s: s.trial_started(number, params))

    def trial_reported(self, number: int, step: int, value: float) -> None:
        """Forwarded to every sink."""
        self._each(lambda s: s.trial_reported(number, step, value))

    def trial_finished(self, trial: FrozenTrial, result: TrialResult) -> None:
        """Forwarded to every sink."""
        self._each(lambda s: s.trial_finished(trial, result))

    def counted(self, done: int) -> None:
        """Forwarded to every sink."""
        self._each(lambda s: s.counted(done))

    def note(self, message: str) -> None:
        """Forwarded to every sink; to stderr when none is left."""
        if not self.sinks:
            print(message, file=sys.stderr)
        self._each(lambda s: s.note(message))

    def refresh(self) -> None:
        """Forwarded to every sink."""
        self._each(lambda s: s.refresh())

    def close(self) -> None:
        """Forwarded to every sink."""
        self._each(lambda s: s.close())
