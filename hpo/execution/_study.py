"""Opening a study for a spec, and the budget arithmetic shared by every executor."""

from __future__ import annotations

import datetime
import json
import warnings
from dataclasses import dataclass

import optuna
import sqlalchemy as sa

from hpo.exceptions import SpecError, StorageError, StudyNotFoundError
from hpo.execution._resume import CONTINUES_ATTR, enqueue_continuation
from hpo.spec import StudySpec
from hpo.storage import count_trials, create_storage, redact_url

__all__ = ["Budget", "budget", "fail_lost_trials", "load_study", "open_study"]

# Heartbeats, retries and metric names are "experimental" in Optuna; we rely on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=r"hpo\.")
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)

SPEC_ATTR = "hpo:spec"
# A trial lost with its orchestrator (not its own fault) may be continued this many more
# times than trial.max_retries allows for its own failures.
STALE_RETRIES = 3


def open_study(spec: StudySpec, *, seed_offset: bool = True) -> tuple[optuna.Study, optuna.storages.RDBStorage]:
    """Create the study of ``spec``, or load it to continue.

    The spec is stored as a study attribute the first time; a later run with other
    directions is refused. When a study continues, a seeded sampler is re-seeded with
    ``seed + trials so far`` so it does not propose the first trials' parameters again.

    Returns:
        The study and its database storage (Optuna wraps the latter in a cache).
    """
    from hpo.pruning import create_pruner
    from hpo.sampling import create_sampler

    storage = create_storage(
        spec.storage_url,
        heartbeat_interval=spec.executor.heartbeat_interval,
        grace_period=spec.executor.grace_period,
        stale_trial_callback=lambda study, trial: enqueue_continuation(
            study, trial, reason="heartbeat lost", max_attempts=spec.trial.max_retries + STALE_RETRIES
        ),
    )
    sampler = create_sampler(spec)
    try:
        study_id = storage.get_study_id_from_name(spec.name)
    except KeyError:
        study_id = None
    if study_id is not None and seed_offset and spec.sampler.seed is not None:
        n = sum(count_trials(storage, study_id).values())
        if n:
            sampler = create_sampler(
                spec.model_copy(update={"sampler": spec.sampler.model_copy(update={"seed": (spec.sampler.seed + n) % 2**32})})
            )
    directions = [d.value for d in spec.study_directions]
    try:
        study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=create_pruner(spec),
            study_name=spec.name,
            directions=directions,
            load_if_exists=True,
        )
    except sa.exc.SQLAlchemyError as e:
        raise StorageError(f"{redact_url(spec.storage_url)}: {e.__class__.__name__}") from None
    have = [d.name.lower() for d in study.directions]
    if have != directions:
        raise SpecError(
            f"study {spec.name!r} already exists with directions {have}, not {directions}",
            key="direction",
        )
    if SPEC_ATTR not in study.user_attrs:
        study.set_user_attr(SPEC_ATTR, json.loads(spec.model_dump_json()))
        study.set_metric_names(spec.metric_names)
    return study, storage


def load_study(name: str, storage_url: str) -> optuna.Study:
    """Load an existing study by name (for status, best, trials).

    Raises:
        StudyNotFoundError: No such study in that database.
    """
    storage = create_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in storage.get_all_studies()]
        raise StudyNotFoundError(
            f"no study {name!r} in {redact_url(storage_url)} (studies there: {', '.join(names) or 'none'})"
        ) from None


def fail_lost_trials(study: optuna.Study, storage: optuna.storages.RDBStorage, sid: int, grace_s: float) -> int:
    """Fail RUNNING trials whose orchestrator died, and continue them; return how many.

    Optuna's ``fail_stale_trials`` covers trials whose heartbeat stopped; a trial whose
    orchestrator died between creating it and its first heartbeat has no heartbeat at
    all, and is taken as lost once it is older than the grace period.
    """
    optuna.storages.fail_stale_trials(study)
    query = sa.text(
        "SELECT t.trial_id, t.datetime_start FROM trials t LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
        "WHERE t.study_id = :sid AND t.state = 'RUNNING' AND h.trial_id IS NULL"
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query, {"sid": sid}).all()
    now = datetime.datetime.now()
    lost = 0
    callback = storage.get_heartbeat_stale_trial_callback()
    for trial_id, started in rows:
        if isinstance(started, str):  # SQLite hands raw text back for a text() query
            started = datetime.datetime.fromisoformat(started)
        if started is None or (now - started).total_seconds() < grace_s:
            continue
        try:
            if storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                lost += 1
                if callback is not None:
                    callback(study, storage.get_trial(trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another process got there first
    return lost


@dataclass(frozen=True, slots=True)
class Budget:
    """How far a study is from ``n_trials`` finished trials."""

    done: int
    running: int
    waiting: int
    n_trials: int

    @property
    def can_start(self) -> bool:
        """Whether one more trial may start without overshooting ``n_trials``."""
        return self.done + self.running < self.n_trials

    @property
    def finished(self) -> bool:
        """Whether ``n_trials`` trials have finished."""
        return self.done >= self.n_trials


def budget(storage: optuna.storages.RDBStorage, sid: int, n_trials: int) -> Budget:
    """Count finished trials of study ``sid``, a retried failure counting once (as its retry).

    Constant work per call: two aggregate queries, not a load of every trial.
    """
    counts = count_trials(storage, sid)
    query = sa.text(
        "SELECT COUNT(DISTINCT t.trial_id) FROM trial_system_attributes a JOIN trials t ON a.trial_id = t.trial_id "
        "WHERE t.study_id = :sid AND a.key IN ('failed_trial', :continues)"
    )
    with storage.engine.connect() as conn:
        retries = int(conn.execute(query, {"sid": sid, "continues": CONTINUES_ATTR}).scalar_one())
    done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0) - retries
    return Budget(done, counts.get("RUNNING", 0), counts.get("WAITING", 0), n_trials)
