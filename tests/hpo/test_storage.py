"""The study database: SQLite set up for many processes, PostgreSQL alike, secrets hidden."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy as sa

import hpo
from hpo.exceptions import StorageError
from hpo.execution import budget, open_study
from hpo.reporting import Progress
from hpo.storage import count_trials, create_storage, redact_url


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


def test_count_and_budget_count_a_retried_failure_once(write_study) -> None:
    spec = hpo.load_spec(write_study({"n_trials": 3}))
    study, storage = open_study(spec)
    hpo.optimize(spec, progress=Progress())
    sid = storage.get_study_id_from_name("t")
    assert count_trials(storage, sid) == {"COMPLETE": 3}
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    assert budget(storage, sid, 5).done == 4
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, study.trials[-1])
    b = budget(storage, sid, 5)
    assert (b.done, b.waiting) == (3, 1)


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
