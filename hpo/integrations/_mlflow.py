"""MLflow tracking: one run per trial, with parameters, the learning curve and final metrics."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from hpo.execution import Outcome
from hpo.reporting import Progress

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from hpo.execution import TrialResult
    from hpo.spec import StudySpec

__all__ = ["MlflowProgress"]

# MLflow's run statuses for how a trial ended.
_STATUS = {
    Outcome.COMPLETE: "FINISHED",
    Outcome.PRUNED: "KILLED",
    Outcome.FAIL: "FAILED",
    Outcome.INTERRUPTED: "KILLED",
}


class MlflowProgress(Progress):
    """Logs each trial as an MLflow run in the experiment named after the study.

    Runs are named ``trial_<number>`` and tagged ``hpo.study``, ``hpo.trial`` and, once
    finished, ``hpo.state``. Parameters are logged when the trial starts, every report as
    a step of the study's first metric, and the returned metrics when it ends; the run's
    status is FINISHED, KILLED (pruned or interrupted) or FAILED.

    Args:
        tracking_uri: Where to track: ``sqlite:///mlflow.db`` for a local database,
            ``http://host:5000`` for a tracking server, ``file:///abs/mlruns`` for MLflow's
            file store (which recent MLflow versions only open with
            ``MLFLOW_ALLOW_FILE_STORE=true``). None uses MLflow's own default.
        experiment: The experiment name (default: the study's name).

    Raises:
        ImportError: The ``mlflow`` package is not installed (``pip install 'hpo[tracking]'``).
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            raise ImportError(f"MlflowProgress needs mlflow: pip install 'hpo[tracking]' ({e})") from None
        self._client_cls = MlflowClient
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self._client: Any = None
        self._experiment_id: str | None = None
        self._study = ""
        self._metric = "value"
        self._runs: dict[int, str] = {}
        self._seen: dict[int, set[int]] = {}  # steps logged from reports, per trial
        self._lock = threading.Lock()

    def start(self, spec: StudySpec, done: int, study: optuna.Study) -> None:
        """Connect and find or create the experiment."""
        self._client = self._client_cls(tracking_uri=self.tracking_uri)
        self._study, self._metric = spec.name, spec.metric_names[0]
        name = self.experiment or spec.name
        found = self._client.get_experiment_by_name(name)
        self._experiment_id = found.experiment_id if found else self._client.create_experiment(name)

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """Open the trial's run and log its parameters."""
        from mlflow.entities import Param

        run = self._client.create_run(
            self._experiment_id,
            run_name=f"trial_{number}",
            tags={"hpo.study": self._study, "hpo.trial": str(number)},
        )
        with self._lock:
            self._runs[number] = run.info.run_id
        if params:
            self._client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def _run_id(self, number: int) -> str | None:
        with self._lock:
            return self._runs.get(number)

    def trial_reported(self, number: int, step: int, value: float) -> None:
        """One step of the study's metric."""
        run_id = self._run_id(number)
        if run_id is not None:
            self._client.log_metric(run_id, self._metric, value, step=step)
            with self._lock:
                self._seen.setdefault(number, set()).add(step)

    def trial_finished(self, trial: FrozenTrial, result: TrialResult) -> None:
        """Final metrics under ``final/<name>``, the ``hpo.state`` tag and the run's status."""
        with self._lock:
            run_id = self._runs.pop(trial.number, None)
            seen = self._seen.pop(trial.number, set())
        if run_id is None:
            return
        from mlflow.entities import Metric, RunTag

        step = max(trial.intermediate_values, default=0)
        now_ms = int(time.time() * 1000)
        # Steps no report showed here (rank 0 on Ray writes them to the database directly).
        metrics = [Metric(self._metric, float(v), now_ms, s) for s, v in sorted(trial.intermediate_values.items())
                   if s not in seen]
        metrics += [Metric(f"final/{k}", float(v), now_ms, step) for k, v in (result.metrics or {}).items()]
        self._client.log_batch(run_id, metrics=metrics, tags=[RunTag("hpo.state", trial.state.name)])
        self._client.set_terminated(run_id, status=_STATUS[result.outcome])

    def close(self) -> None:
        """End the runs of trials that did not finish, as KILLED."""
        with self._lock:
            open_runs, self._runs = list(self._runs.values()), {}
        for run_id in open_runs:
            self._client.set_terminated(run_id, status="KILLED")
