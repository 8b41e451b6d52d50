"""The study loop: budgets, continuation, failures, NaN, pruning and engine parameters."""

from __future__ import annotations

import io
import math

import optuna
from optuna.trial import TrialState

import hpo
from hpo.execution import ERROR_ATTR, apply_engine_params
from hpo.reporting import PlainProgress, Progress

OBJ = "tests.hpo._objectives"


def test_optimize_returns_study_with_best(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 10}))
    study = hpo.optimize(spec, progress=Progress())
    assert len(study.trials) == 10
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert study.best_value == min(t.value for t in study.trials)
    assert set(study.best_params) == {"x"}


def test_continuation_runs_only_missing_trials(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 4}))
    hpo.optimize(spec, progress=Progress())
    again = hpo.optimize(spec, progress=Progress())  # already finished: runs nothing
    assert len(again.trials) == 4
    more = hpo.optimize(spec, n_trials=7, progress=Progress())
    assert len(more.trials) == 7
    assert sorted(t.number for t in more.trials) == list(range(7))


def test_optuna_reads_what_hpo_wrote(write_study, tmp_path) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 3, "metric": "loss"}))
    hpo.optimize(spec, progress=Progress())
    study = optuna.load_study(study_name="t", storage=spec.storage_url)
    assert len(study.trials) == 3
    assert all("x" in t.params and t.value is not None for t in study.trials)
    assert study.metric_names == ["loss"]


def test_exceptions_fail_the_trial_and_the_study_goes_on(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 12, "trial": {"entrypoint": f"{OBJ}:fails_when_negative"}}))
    study = hpo.optimize(spec, progress=Progress())
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    ok = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert failed and ok and len(study.trials) == 12
    for t in failed:
        assert t.params["x"] < 0
        assert "RuntimeError: negative x=" in t.user_attrs[ERROR_ATTR]


def test_nan_result_fails_the_trial_with_reason(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 10, "trial": {"entrypoint": f"{OBJ}:nan_when_negative"}}))
    study = hpo.optimize(spec, progress=Progress())
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert failed and all("is nan" in t.user_attrs[ERROR_ATTR] for t in failed)
    assert all(math.isfinite(t.value) for t in study.trials if t.state == TrialState.COMPLETE)


def test_nan_report_and_missing_metric_fail_clearly(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 1, "trial": {"entrypoint": f"{OBJ}:report_nan"}}))
    t = hpo.optimize(spec, progress=Progress()).trials[0]
    assert t.state == TrialState.FAIL and "reported nan at step 1" in t.user_attrs[ERROR_ATTR]
    spec = hpo.load_spec(
        write_study({"name": "m", "n_trials": 1, "metric": "acc", "trial": {"entrypoint": f"{OBJ}:missing_metric"}})
    )
    t = hpo.optimize(spec, progress=Progress()).trials[0]
    assert t.state == TrialState.FAIL and "no metric 'acc'" in t.user_attrs[ERROR_ATTR]


def test_bad_trials_are_pruned_by_median(write_study) -> None:
    spec = hpo.load_spec(
        write_study(
            {
                "direction": "maximize",
                "metric": "score",
                "n_trials": 12,
                "pruner": {"type": "median", "n_startup_trials": 3, "n_warmup_steps": 1},
                "trial": {"entrypoint": "hpo.tasks.synthetic:curve", "max_epochs": 6},
                "search_space": {"quality": {"type": "float", "low": 0, "high": 1}},
            }
        )
    )
    study = hpo.optimize(spec, progress=Progress())
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned
    best_q = study.best_params["quality"]
    assert all(t.params["quality"] < best_q for t in pruned)
    assert all(max(t.intermediate_values) < 6 for t in pruned)


def test_concurrent_trials_respect_budget(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 9, "concurrency": 3}))
    study = hpo.optimize(spec, progress=Progress())
    assert len(study.trials) == 9
    assert sorted(t.number for t in study.trials) == list(range(9))


def test_engine_parameters_reach_the_engine_config(write_study) -> None:
    spec = hpo.load_spec(
        write_study(
            {
                "n_trials": 4,
                "trial": {"entrypoint": f"{OBJ}:record_engine_config", "engine": {"gradient_accumulation_steps": 1}},
                "search_space": {"engine.gradient_accumulation_steps": {"type": "categorical", "choices": [2, 4]}},
            }
        )
    )
    study = hpo.optimize(spec, progress=Progress())
    for t in study.trials:
        assert t.value == t.params["engine.gradient_accumulation_steps"]


def test_apply_engine_params_nests_dotted_keys() -> None:
    cfg = apply_engine_params({"optimizer": {"type": "AdamW"}}, {"engine.optimizer.params.lr": 0.1, "lr": 5})
    assert cfg == {"optimizer": {"type": "AdamW", "params": {"lr": 0.1}}}


def test_timeout_stops_starting_trials(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 1000, "timeout": 1, "trial": {"entrypoint": f"{OBJ}:pid"}}))
    out = io.StringIO()
    study = hpo.optimize(spec, progress=PlainProgress(out))
    assert 0 < len(study.trials) < 1000
    assert "timeout of 1s reached: no new trial was started after it" in out.getvalue()


def test_a_trial_taken_for_lost_while_it_ran_does_not_stop_the_study(write_study, tmp_path, monkeypatch) -> None:
    """Its result is dropped (it is FAIL and continued already); the continuation completes."""
    monkeypatch.setenv("HPO_TEST_STORAGE", f"sqlite:///{tmp_path / 'db.sqlite'}")
    spec = hpo.load_spec(write_study({"n_trials": 2, "trial": {"entrypoint": f"{OBJ}:taken_for_lost_while_running"}}))
    study = hpo.optimize(spec, progress=Progress())
    states = [t.state for t in study.trials]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert study.trials[1].system_attrs["hpo:continues"] == {"trial": 0, "reason": "heartbeat lost"}


def test_trials_of_a_study_of_several_objectives_report_their_curve(write_study) -> None:
    """Optuna's Trial.report refuses such studies; the first metric's curve is still recorded."""
    spec = hpo.load_spec(write_study({
        "n_trials": 3, "direction": None, "directions": ["minimize", "maximize"], "metric": ["a", "b"],
        "trial": {"entrypoint": f"{OBJ}:two_metrics_with_reports", "max_epochs": 2},
    }))
    study = hpo.optimize(spec, progress=Progress())
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    for t in study.trials:
        assert t.intermediate_values == {1: t.values[0], 2: 2 * t.values[0]}
