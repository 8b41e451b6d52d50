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


def test_a_failing_sink_given_alone_is_dropped_too(tmp_path, capsys) -> None:
    study = hpo.optimize(_spec(tmp_path, "alone"), executor=InProcessExecutor(), progress=_Broken())
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    assert len(study.trials) == 3
    assert "_Broken stopped after an error: OSError: disk full" in capsys.readouterr().err


def test_composite_takes_only_progress_sinks() -> None:
    with pytest.raises(TypeError, match="must be an hpo.reporting.Progress"):
        CompositeProgress(Progress(), print)  # type: ignore[arg-type]


def test_sinks_write_the_curve_of_a_trial_whose_reports_they_did_not_see(tmp_path) -> None:
    """On Ray, rank 0 reports to the database itself: the sinks see only the finished trial."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from optuna.distributions import FloatDistribution
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from hpo.execution import Outcome, TrialResult

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = _spec(tmp_path, "ray_like")
    study = optuna.create_study(study_name="ray_like", storage=spec.storage_url, direction="maximize")
    trial = optuna.trial.create_trial(
        params={"quality": 0.5}, distributions={"quality": FloatDistribution(0.0, 1.0)},
        value=0.4, intermediate_values={1: 0.1, 2: 0.3, 3: 0.4},
    )
    trial.number = 0
    tb, ml = TensorBoardProgress(tmp_path / "tb"), MlflowProgress(tracking)
    for sink in (tb, ml):
        sink.start(spec, 0, study)
        sink.trial_started(0, trial.params)
        sink.trial_reported(0, 1, 0.1)  # the one report the sinks do see
        sink.trial_finished(trial, TrialResult(Outcome.COMPLETE, values=[0.4], metrics={"score": 0.4}))
        sink.close()
    acc = EventAccumulator(str(tmp_path / "tb" / "trial_0"))
    acc.Reload()
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("score")] == [(1, 0.1), (2, 0.3), (3, 0.4)]
    client, runs, _ = _runs(tracking, "ray_like")
    history = client.get_metric_history(runs[0].info.run_id, "score")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.3), (3, 0.4)]
