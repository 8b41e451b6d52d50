"""Opening a study for a spec, and the budget arithmetic shared by every executor."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import optuna
import sqlalchemy as sa

from hpo.exceptions import SpecError, StorageError, StudyNotFoundError
from hpo.execution._resume import CONTINUES_ATTR, enqueue_continuation
from hpo.spec import StudySpec
from hpo.storage import count_trials, create_storage, redact_url

__all__ = ["Budget", "budget", "load_study", "open_study"]

# Heartbeats, retries and metric names are "experimental" in Optuna; we rely on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=r"hpo\.")
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)

SPEC_ATTR = "hpo:spec"
# Trials left RUNNING by a dead orchestrator are failed after this long without a heartbeat.
HEARTBEAT_INTERVAL_S = 5
GRACE_PERIOD_S = 30
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
        heartbeat_interval=HEARTBEAT_INTERVAL_S,
        grace_period=GRACE_PERIOD_S,
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
