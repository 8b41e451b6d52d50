"""Progress of a running study: a live rich display on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import optuna

    from hpo.execution._outcome import TrialResult
    from hpo.spec import StudySpec

__all__ = ["PlainProgress", "Progress", "RichProgress", "make_progress"]


class Progress:
    """Receives study events; every method is a no-op by default. Thread-safe by contract."""

    def start(self, spec: StudySpec, done: int, study: optuna.Study) -> None:
        """The study starts with ``done`` trials already finished."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """Trial ``number`` starts with ``params``."""

    def trial_reported(self, number: int, step: int, value: float) -> None:
        """Trial ``number`` reported ``value`` at ``step``."""

    def trial_finished(self, trial: FrozenTrial, result: TrialResult) -> None:
        """Trial ``trial.number`` ended."""

    def counted(self, done: int) -> None:
        """Trials of the budget finished, as the budget counts them (called just before each
        ``trial_finished``): a retried failure and a promoted trial count once."""

    def note(self, message: str) -> None:
        """A message for the user."""

    def refresh(self) -> None:
        """Redraw, if the display is live."""

    def close(self) -> None:
        """The study loop ended."""


class _Tally(Progress):
    """Counts shared by both displays."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.done = self.pruned = self.failed = 0
        self.running: dict[int, str] = {}
        self.best: tuple[float, int] | None = None
        self.maximize = False
        self.metric = "value"
        self.metrics = ["value"]
        self.study: optuna.Study | None = None  # for its best (or front) over every process
        self.front = 0  # Pareto-optimal trials, with several objectives
        self.t0 = time.monotonic()
        self.done_here = 0

    def start(self, spec: StudySpec, done: int, study: optuna.Study) -> None:
        self.total, self.done = spec.n_trials, done
        self.maximize = spec.study_directions[0].value == "maximize"
        self.metric = spec.metric_names[0]
        self.metrics = spec.metric_names
        self.study = study
        if self.pareto:
            self.front = len(study.best_trials)
        else:
            self.read_best()

    @property
    def pareto(self) -> bool:
        """Several objectives: a Pareto front, no one best."""
        return len(self.metrics) > 1

    def read_best(self) -> None:
        """The study's best as stored: other processes' trials included."""
        if self.study is None or self.pareto:
            return
        try:
            bt = self.study.best_trial
        except ValueError:
            return
        with self.lock:
            self.best = (bt.value, bt.number)

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        with self.lock:
            self.running[number] = "started"

    def trial_reported(self, number: int, step: int, value: float) -> None:
        with self.lock:
            self.running[number] = f"step {step}: {value:.4g}"

    def trial_finished(self, trial: FrozenTrial, result: TrialResult) -> None:
        # Read here, once per finished trial, not at every redraw.
        front = len(self.study.best_trials) if self.pareto and self.study is not None and trial.values else self.front
        with self.lock:
            self.front = front
            self.running.pop(trial.number, None)
            if result.outcome.value == "INTERRUPTED":
                return  # queued again: it will finish in a later run
            self.done_here += 1
            self.pruned += trial.state == TrialState.PRUNED
            self.failed += trial.state == TrialState.FAIL
            if trial.state == TrialState.COMPLETE and trial.values and len(trial.values) == 1:
                v = trial.values[0]
                if self.best is None or (v > self.best[0] if self.maximize else v < self.best[0]):
                    self.best = (v, trial.number)

    def counted(self, done: int) -> None:
        with self.lock:
            self.done = done

    def eta(self) -> str:
        if not self.done_here:
            return "?"
        per = (time.monotonic() - self.t0) / self.done_here
        return f"{max(0, self.total - self.done) * per:.0f}s"

    def best_text(self) -> str:
        if self.pareto:
            return f"{self.front} trial(s) on the Pareto front" if self.front else "-"
        return f"{self.best[0]:.6g} (trial {self.best[1]})" if self.best else "-"

    def values_text(self, trial: FrozenTrial) -> str:
        """`` metric=value`` for each metric of a trial that has values."""
        return "".join(f" {m}={v:.6g}" for m, v in zip(self.metrics, trial.values or []))


class PlainProgress(_Tally):
    """One log line per finished trial, for logs, CI and pipes."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def start(self, spec: StudySpec, done: int, study: optuna.Study) -> None:
        super().start(spec, done, study)
        self._print(f"study {spec.name}: {done}/{spec.n_trials} trials finished, running up to {spec.concurrency} at once")

    def trial_finished(self, trial: FrozenTrial, result: TrialResult) -> None:
        super().trial_finished(trial, result)
        state = result.outcome.value
        value = self.values_text(trial)
        why = f" [{result.error.strip().splitlines()[-1][:160]}]" if result.error and state != "COMPLETE" else ""
        self._print(
            f"trial {trial.number} {state}{value}{why} params={trial.params} | "
            f"{self.done}/{self.total} done, {self.pruned} pruned, {self.failed} failed, "
            f"best {self.best_text()}, eta {self.eta()}"
        )

    def note(self, message: str) -> None:
        self._print(message)

    def close(self) -> None:
        self.read_best()
        best = self.best_text() if self.pareto else f"best {self.metric} {self.best_text()}"
        self._print(f"{self.done}/{self.total} trials finished; {best}")


class RichProgress(_Tally):
    """A live display: a progress bar with counts, best so far, ETA and the running trials."""

    def __init__(self) -> None:
        super().__init__()
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=False)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        with self.lock:
            grid = Table.grid(padding=(0, 1))
            grid.add_row(
                ProgressBar(total=max(self.total, 1), completed=self.done, width=30),
                f"{self.done}/{self.total} done",
                f"running {len(self.running)}",
                f"pruned {self.pruned}",
                f"failed {self.failed}",
                f"best {self.best_text()}",
                f"eta {self.eta()}",
            )
            for n, last in sorted(self.running.items()):
                grid.add_row("", f"  trial {n}", last)
            return grid

    def start(self, spec: StudySpec, done: int, study: optuna.Study) -> None:
        super().start(spec, done, study)
        self.live.start()
        self.live.update(self._render())

    def trial_finished(self, trial: FrozenTrial, result: TrialResult) -> None:
        super().trial_finished(trial, result)
        state = {"COMPLETE": "green", "PRUNED": "yellow"}.get(result.outcome.value, "red")
        value = self.values_text(trial)
        self.live.console.print(f"[{state}]trial {trial.number} {result.outcome.value}[/]{value} {trial.params}")

    def note(self, message: str) -> None:
        self.live.console.print(message)

    def refresh(self) -> None:
        self.live.update(self._render())

    def close(self) -> None:
        self.read_best()
        self.live.update(self._render())
        self.live.stop()


def make_progress(quiet: bool = False) -> Progress:
    """A live display when stdout is a terminal, plain lines otherwise (nothing if quiet)."""
    if quiet:
        return Progress()
    return RichProgress() if sys.stdout.isatty() else PlainProgress()
