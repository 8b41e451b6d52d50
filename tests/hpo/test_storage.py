"""The study database: SQLite set up for many processes, PostgreSQL alike, secrets hidden."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

import hpo
from hpo.exceptions import StorageError
from hpo.execution import budget, open_study
from hpo.execution._study import Budget, tell
from hpo.reporting import Progress
from hpo.storage import count_trials, create_storage, redact_url, study_lock


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path) -> None:
    storage = create_storage(f"sqlite:///{tmp_path}/sub/dir/x.db")  # parent dirs are created
    with storage.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 60_000


def test_redact_url_hides_password() -> None:
    assert redact_url("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "s3cret" not in redact_url("postgresql+psycopg://u:s3cret@h/db")


def test_unreachable_database_error_hides_password() -> None:
    with pytest.raises(StorageError) as info:
        create_storage("postgresql://u:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_count_and_budget_count_a_retried_failure_once(write_study, request, backend) -> None:
    overrides = {"n_trials": 3}
    if backend == "postgresql":
        overrides["storage"] = request.getfixturevalue("postgres_url")
    spec = hpo.load_spec(write_study(overrides))
    study, storage = open_study(spec)
    sid = storage.get_study_id_from_name("t")
    assert budget(storage, sid, 3) == Budget(0, 0, 0, 3)  # no trials: no rows
    hpo.optimize(spec, progress=Progress())
    assert count_trials(storage, sid) == {"COMPLETE": 3}
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    assert budget(storage, sid, 5).done == 4
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[-1])
    # The same count on the connection that holds the study lock (autocommit on a server).
    with study_lock(storage, "t") as conn:
        b = budget(storage, sid, 5, conn)
    assert (b.done, b.running, b.waiting) == (3, 0, 1)
    assert budget(storage, sid, 5) == b


@pytest.mark.parametrize("outcome", ["complete", "pruned", "fail"])
def test_tell_returns_the_trial_as_stored(tmp_path, outcome) -> None:
    storage = create_storage(f"sqlite:///{tmp_path}/t.db")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    trial.set_user_attr("note", "kept")
    trial.report(0.5, 1)
    trial.report(0.25, 2)
    state = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL}[outcome]
    told = tell(study, trial, state, [0.125] if outcome == "complete" else None)
    stored = storage.get_trial(trial._trial_id)
    assert told.state == stored.state == state
    assert told.values == stored.values == {"complete": [0.125], "pruned": [0.25], "fail": None}[outcome]
    for field in ("number", "params", "distributions", "user_attrs", "intermediate_values", "datetime_start"):
        assert getattr(told, field) == getattr(stored, field), field
    assert told.datetime_complete is not None
    with pytest.raises(ValueError, match="Cannot tell"):
        tell(study, trial, TrialState.FAIL)  # a finished trial stays as it is


def test_tell_reads_back_what_another_process_wrote(tmp_path) -> None:
    storage = create_storage(f"sqlite:///{tmp_path}/t.db")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    storage.set_trial_user_attr(trial._trial_id, "hpo:checkpoint", {"step": 3})  # not through `trial`
    storage.set_trial_intermediate_value(trial._trial_id, 3, 0.5)
    told = tell(study, trial, TrialState.FAIL, reread=True)
    assert told.user_attrs == {"hpo:checkpoint": {"step": 3}} and told.intermediate_values == {3: 0.5}
    assert told.state == TrialState.FAIL


def test_postgresql_works_the_same(write_study, postgres_url) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 6, "storage": postgres_url}))
    study = hpo.optimize(spec, progress=Progress())
    assert len(study.trials) == 6
    again = hpo.optimize(spec, n_trials=8, progress=Progress())
    assert len(again.trials) == 8
    loaded = optuna.load_study(study_name="t", storage=postgres_url.replace("+psycopg", "+psycopg"))
    assert [t.params for t in loaded.trials] == [t.params for t in again.trials]
    engine = sa.create_engine(postgres_url)
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM trials")).scalar() == 8
    engine.dispose()
