"""Failed trials are retried with the same parameters from their latest checkpoint."""

from __future__ import annotations

from pathlib import Path

from optuna.trial import TrialState

import hpo
from hpo.execution import CHECKPOINT_ATTR, RESUME_ATTR
from hpo.reporting import Progress, trial_rows


def _spec(write_study, tmp_path, retries: int) -> hpo.StudySpec:
    return hpo.load_spec(
        write_study(
            {
                "n_trials": 1,
                "run_dir": str(tmp_path / "runs"),
                "trial": {"entrypoint": "tests.hpo._objectives:crash_once_at_3", "max_epochs": 5, "max_retries": retries},
            }
        )
    )


def test_retry_resumes_from_checkpoint_without_repeating_steps(write_study, tmp_path) -> None:
    study = hpo.optimize(_spec(write_study, tmp_path, retries=1), progress=Progress())
    first, retry = study.trials
    assert first.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == first.params
    # Steps 4 and 5 were trained after the resume; 1-3 came from the checkpoint.
    assert retry.value == 5 and retry.user_attrs["hpo:metrics"]["start"] == 3
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5]
    assert study._storage.get_trial_system_attrs(retry._trial_id)[RESUME_ATTR]["step"] == 3
    # Only the latest checkpoint of each trial is kept.
    assert [p.name for p in Path(retry.user_attrs[CHECKPOINT_ATTR]["path"]).parent.iterdir()] == ["step_5"]
    rows = trial_rows(study)
    assert rows[1]["retry_of"] == 0 and "node lost" in rows[1]["previous_errors"]


def test_no_retries_means_one_failed_trial(write_study, tmp_path) -> None:
    study = hpo.optimize(_spec(write_study, tmp_path, retries=0), progress=Progress())
    assert [t.state for t in study.trials] == [TrialState.FAIL]


def test_a_checkpoint_whose_report_never_landed_is_not_resumed_from(tmp_path) -> None:
    """Killed between recording the step-2 checkpoint and reporting step 2: the retry starts over
    rather than leave step 2 out of its curve; with the report in, it resumes at step 2."""
    import optuna
    from optuna.distributions import FloatDistribution

    from hpo.execution import enqueue_continuation

    (tmp_path / "step_2").mkdir()
    study = optuna.create_study()
    for values in ({1: 0.5}, {1: 0.5, 2: 0.4}):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.FAIL, params={"x": 1.0}, distributions={"x": FloatDistribution(0, 2)},
            intermediate_values=values, user_attrs={CHECKPOINT_ATTR: {"step": 2, "path": str(tmp_path / "step_2")}},
        ))
    for t in study.get_trials():
        enqueue_continuation(study, t, reason="heartbeat lost", max_attempts=None)
    lost, reported = study.get_trials()[2:]
    assert RESUME_ATTR not in lost.system_attrs and lost.intermediate_values == {}
    assert reported.system_attrs[RESUME_ATTR]["step"] == 2 and reported.intermediate_values == {1: 0.5, 2: 0.4}
