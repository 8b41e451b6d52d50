"""Failed trials are retried with the same parameters from their latest checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
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


def test_a_trial_lost_with_its_orchestrator_is_continued_three_times_more_than_max_retries(write_study, tmp_path) -> None:
    """Three orchestrator kills that each catch the same chain lose nothing; a fourth loss in a
    row (a trial that takes its orchestrator down each time) ends the chain."""
    from hpo.execution._study import STALE_RETRIES, open_study

    spec = hpo.load_spec(write_study({"n_trials": 1, "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"}}))
    study, storage = open_study(spec)
    lost_with_orchestrator = storage.get_heartbeat_stale_trial_callback()
    trial = study.ask()
    for attempt in range(1, STALE_RETRIES + 2):
        storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        lost_with_orchestrator(study, storage.get_trial(trial._trial_id))
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert len(waiting) == (1 if attempt <= STALE_RETRIES else 0), attempt
        if waiting:
            trial = study.ask()
            assert trial.number == waiting[0].number
    assert [t.state for t in study.trials] == [TrialState.FAIL] * (STALE_RETRIES + 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def lost_trial_study(request, write_study):
    """A study with two RUNNING trials that beat: the first long ago, the second just now."""
    import sqlalchemy as sa

    from hpo.execution._study import open_study

    overrides = {"n_trials": 1, "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"}}
    if request.param == "postgresql":
        overrides["storage"] = request.getfixturevalue("postgres_url")
    spec = hpo.load_spec(write_study(overrides))
    study, storage = open_study(spec)
    lost, alive = study.ask(), study.ask()
    lost.report(0.5, 1)
    storage.record_heartbeat(lost._trial_id)
    with storage.engine.begin() as conn:
        conn.execute(sa.text("UPDATE trial_heartbeats SET heartbeat = :t"), {"t": "2000-01-01 00:00:00"})
    storage.record_heartbeat(alive._trial_id)  # by the database's clock, as the check reads it
    return study, storage, storage.get_study_id_from_name(spec.name)


def test_a_trial_whose_heartbeat_stopped_is_failed_and_continued(lost_trial_study) -> None:
    from hpo.execution._study import fail_lost_trials

    study, storage, sid = lost_trial_study
    fresh = study.ask()  # started now, no heartbeat yet: not lost
    assert fail_lost_trials(study, storage, sid, grace_s=30, unbeaten={}) == 1
    lost, alive, fresh, continuation = study.get_trials()
    assert lost.state == TrialState.FAIL and alive.state == fresh.state == TrialState.RUNNING
    assert continuation.state == TrialState.WAITING and continuation.params == lost.params
    assert continuation.system_attrs["hpo:continues"] == {"trial": 0, "reason": "heartbeat lost"}
    assert continuation.intermediate_values == {}  # no checkpoint: it starts over


def test_a_crash_between_continuing_a_lost_trial_and_failing_it_continues_it_once(lost_trial_study) -> None:
    """The continuation is written first; found lost again, the trial is only failed."""
    from hpo.execution._study import fail_lost_trials

    study, storage, sid = lost_trial_study
    continue_lost = storage.get_heartbeat_stale_trial_callback()
    continue_lost(study, study.get_trials()[0])  # ... and the process died before the FAIL
    assert fail_lost_trials(study, storage, sid, grace_s=30, unbeaten={}) == 1
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]


def test_a_trial_without_heartbeat_is_lost_after_the_grace_period_seen_here_whatever_its_start_clock(
    write_study,
) -> None:
    """Its start time comes from the clock of the host that started it (perhaps hours ahead or
    behind): a trial another host started a moment ago is not failed for it."""
    import datetime
    import time

    import sqlalchemy as sa

    from hpo.execution._study import fail_lost_trials, open_study

    spec = hpo.load_spec(write_study({"n_trials": 1, "trial": {"entrypoint": "hpo.tasks.synthetic:quadratic"}}))
    study, storage = open_study(spec)
    sid = storage.get_study_id_from_name(spec.name)
    trial = study.ask()
    hours_behind = datetime.datetime.now() - datetime.timedelta(hours=5)
    with storage.engine.begin() as conn:
        conn.execute(sa.text("UPDATE trials SET datetime_start = :t"), {"t": hours_behind})
    unbeaten: dict[int, float] = {}
    assert fail_lost_trials(study, storage, sid, grace_s=0.5, unbeaten=unbeaten) == 0
    assert study.trials[0].state == TrialState.RUNNING
    time.sleep(0.6)
    assert fail_lost_trials(study, storage, sid, grace_s=0.5, unbeaten=unbeaten) == 1
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING] and unbeaten == {}
    assert study.trials[1].system_attrs["hpo:continues"]["trial"] == trial.number


class _Killed(BaseException):
    """Stands for the process dying at this point."""


def test_a_lost_trial_is_continued_before_it_is_failed(lost_trial_study, monkeypatch) -> None:
    from hpo.execution._study import fail_lost_trials

    study, storage, sid = lost_trial_study

    def killed(*args, **kwargs):
        raise _Killed

    monkeypatch.setattr(storage, "set_trial_state_values", killed)
    with pytest.raises(_Killed):
        fail_lost_trials(study, storage, sid, grace_s=30, unbeaten={})
    monkeypatch.undo()
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING, TrialState.RUNNING, TrialState.WAITING]


def test_a_failed_trial_is_continued_before_it_is_failed(write_study, tmp_path, monkeypatch) -> None:
    """Killed between the two writes, the trial stays RUNNING (to be found lost) with its
    continuation queued; the other order would leave a FAIL that nothing continues."""
    from hpo.execution import _optimize

    def killed(study, trial, state, *args, **kwargs):
        if state is TrialState.FAIL:
            raise _Killed
        return tell(study, trial, state, *args, **kwargs)

    tell = _optimize.tell
    monkeypatch.setattr(_optimize, "tell", killed)
    spec = _spec(write_study, tmp_path, retries=1)
    with pytest.raises(_Killed):
        hpo.optimize(spec, progress=Progress())
    first, retry = hpo.load_study(spec.name, spec.storage_url).trials
    assert first.state == TrialState.RUNNING and retry.state == TrialState.WAITING
    assert retry.system_attrs["hpo:continues"] == {"trial": 0, "reason": "error"}


def test_a_failed_trial_without_retries_left_is_not_continued_when_found_lost(
    write_study, tmp_path, monkeypatch
) -> None:
    """Killed after its result said FAIL (no retry left) but before the FAIL was written, the
    trial is found lost; it is failed then, not continued as a trial lost with its orchestrator."""
    from hpo.execution import _optimize
    from hpo.execution._study import fail_lost_trials, open_study

    def killed(study, trial, state, *args, **kwargs):
        raise _Killed

    monkeypatch.setattr(_optimize, "tell", killed)
    spec = _spec(write_study, tmp_path, retries=0)
    with pytest.raises(_Killed):
        hpo.optimize(spec, progress=Progress())
    monkeypatch.undo()
    study, storage = open_study(spec)
    unbeaten = {study.trials[0]._trial_id: -1e9}  # seen without heartbeat since long ago
    sid = storage.get_study_id_from_name(spec.name)
    with storage.engine.begin() as conn:  # and the heartbeats it had are long stale
        conn.execute(sa.text("UPDATE trial_heartbeats SET heartbeat = :t"), {"t": "2000-01-01 00:00:00"})
    assert fail_lost_trials(study, storage, sid, grace_s=5, unbeaten=unbeaten) == 1
    assert [t.state for t in study.trials] == [TrialState.FAIL]
