"""TensorBoard and MLflow logging of a study, read back with each tool's own reader, offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

import hpo
from hpo.execution import InProcessExecutor
from hpo.integrations import CompositeProgress, MlflowProgress, TensorBoardProgress
from hpo.reporting import Progress

# MLflow's own SQL store uses a loader strategy SQLAlchemy 2.1 deprecates.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


def _spec(tmp_path: Path, name: str) -> hpo.StudySpec:
    return hpo.spec_from_dict(
        {
            "name": name,
            "storage": f"sqlite:///{tmp_path / 'study.db'}",
            "direction": "maximize",
            "metric": "score",
            "sampler": {"type": "random", "seed": 3},
            "pruner": {"type": "median", "n_startup_trials": 1},
            "n_trials": 3,
            "trial": {"entrypoint": "hpo.tasks.synthetic:curve", "max_epochs": 4},
            "search_space": {
                "quality": {"type": "float", "low": 0.0, "high": 1.0},
                "act": {"type": "categorical", "choices": ["relu", None]},
            },
        }
    )


def _run(tmp_path: Path, name: str, *sinks: Progress) -> optuna.Study:
    return hpo.optimize(
        _spec(tmp_path, name), executor=InProcessExecutor(), progress=CompositeProgress(*sinks)
    )


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, Path, str]:
    """One 3-trial study logged to TensorBoard and to MLflow (a local SQLite tracking store)."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    tmp = tmp_path_factory.mktemp("integrations")
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    study = _run(tmp, "logged", Progress(), TensorBoardProgress(tmp / "tb"), MlflowProgress(tracking))
    assert len(study.trials) == 3
    return study, tmp / "tb", tracking


def test_tensorboard_has_each_trials_learning_curve(logged) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    study, tb, _ = logged
    assert sorted(p.name for p in tb.iterdir()) == ["trial_0", "trial_1", "trial_2"]
    for t in study.trials:
        acc = EventAccumulator(str(tb / f"trial_{t.number}"))
        acc.Reload()
        curve = {e.step: e.value for e in acc.Scalars("score")}
        assert curve == pytest.approx(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert acc.Scalars("final/score")[-1].value == pytest.approx(t.value)
            assert "hparam/score" in acc.Tags()["scalars"]
        assert "params/text_summary" in acc.Tags()["tensors"]


def _runs(tracking: str, experiment: str) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client, client.search_runs([exp.experiment_id], order_by=["tags.`hpo.trial` ASC"]), mlflow


def _check_mlflow(study: optuna.Study, tracking: str) -> None:
    client, runs, _ = _runs(tracking, study.study_name)
    assert [r.data.tags["hpo.trial"] for r in runs] == ["0", "1", "2"]
    status = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}
    for t, run in zip(study.trials, runs):
        assert run.info.run_name == f"trial_{t.number}" and run.data.tags["hpo.state"] == t.state.name
        assert run.info.status == status[t.state]
        assert run.data.params == {k: str(v) for k, v in t.params.items()}
        history = client.get_metric_history(run.info.run_id, "score")
        assert {m.step: m.value for m in history} == pytest.approx(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert run.data.metrics["final/score"] == pytest.approx(t.value)


def test_mlflow_has_a_run_per_trial(logged) -> None:
    study, _, tracking = logged
    assert {t.state for t in study.trials} == {TrialState.COMPLETE, TrialState.PRUNED}
    _check_mlflow(study, tracking)
    _, _, mlflow = _runs(tracking, study.study_name)
    mlflow.set_tracking_uri(tracking)
    frame = mlflow.search_runs(experiment_names=["logged"])
    assert len(frame) == 3 and {"params.quality", "params.act", "metrics.score"} <= set(frame.columns)


def test_mlflow_file_store(tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # recent MLflow asks for an opt-in
    tracking = (tmp_path / "mlruns").as_uri()
    study = _run(tmp_path, "files", MlflowProgress(tracking, experiment="files"))
    _check_mlflow(study, tracking)


class _Recorder(Progress):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def trial_reported(self, number: int, step: int, value: float) -> None:
        self.events.append(("reported", number))

    def note(self, message: str) -> None:
        self.events.append(("note", message))

    def close(self) -> None:
        self.events.append(("close", None))


class _Broken(_Recorder):
    def trial_reported(self, number: int, step: int, value: float) -> None:
        super().trial_reported(number, step, value)
        raise OSError("disk full")


def test_a_failing_sink_is_dropped_without_failing_trials(tmp_path) -> None:
    good, broken = _Recorder(), _Broken()
    progress = CompositeProgress(good, broken)
    study = hpo.optimize(_spec(tmp_path, "broken"), executor=InProcessExecutor(), progress=progress)
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert progress.sinks == [good]
    assert broken.events == [("reported", 0)]  # its first error ended its part in the study
    notes = [m for kind, m in good.events if kind == "note"]
    assert notes == ["_Broken stopped after an error: OSError: disk full"]
    assert sum(kind == "reported" for kind, _ in good.events) == sum(
        len(t.intermediate_values) for t in study.trials
    )
    assert good.events[-1] == ("close", None)


def test_composite_takes_only_progress_sinks() -> None:
    with pytest.raises(TypeError, match="must be an hpo.reporting.Progress"):
        CompositeProgress(Progress(), print)  # type: ignore[arg-type]
