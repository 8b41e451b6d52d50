"""Opening a study for a spec, and the budget arithmetic shared by every executor."""

from __future__ import annotations

import copy
import datetime
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
import sqlalchemy as sa
from optuna.trial import FrozenTrial, TrialState

from hpo.exceptions import SpecError, StorageError, StudyNotFoundError
from hpo.execution._resume import CONTINUES_ATTR, NOT_CONTINUED_ATTR, enqueue_continuation
from hpo.spec import StudySpec
from hpo.storage import count_trials, create_storage, redact_url, require_database

__all__ = ["Budget", "budget", "fail_lost_trials", "load_study", "open_study", "report", "tell"]

try:  # what Study.optimize calls; Study.tell adds a read of the trial it has just written
    from optuna.study._tell import _tell_with_warning
except ImportError:  # pragma: no cover - another Optuna layout: Study.tell below
    _tell_with_warning = None

# Heartbeats, retries and metric names are "experimental" in Optuna; we rely on them knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, module=r"hpo\.")
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)

SPEC_ATTR = "hpo:spec"
N_TRIALS_ATTR = "hpo:n_trials"
# A trial lost with its orchestrator (not its own fault) may be continued this many more
# times than trial.max_retries allows for its own failures. A bound still: a trial that
# takes its orchestrator down with it (thread isolation, out of memory) must not loop.
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
            study, trial, reason="heartbeat lost", max_attempts=spec.trial.max_retries + 1 + STALE_RETRIES
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
    if study.metric_names is not None and study.metric_names != spec.metric_names:
        raise SpecError(
            f"study {spec.name!r} already exists with metric(s) {study.metric_names}, not {spec.metric_names}: "
            "its trials' values would mix two metrics (use a new study name)",
            key="metric",
        )
    if SPEC_ATTR not in study.user_attrs:
        stored = json.loads(spec.model_dump_json())
        if stored.get("storage"):
            stored["storage"] = redact_url(stored["storage"])  # the database holds no password of its own
        study.set_user_attr(SPEC_ATTR, stored)
        study.set_metric_names(spec.metric_names)
    if study.user_attrs.get(N_TRIALS_ATTR) != spec.n_trials:
        study.set_user_attr(N_TRIALS_ATTR, spec.n_trials)  # the budget of the latest run
    return study, storage


def load_study(name: str, storage_url: str) -> optuna.Study:
    """Load an existing study by name (for status, best, trials).

    Raises:
        StudyNotFoundError: No such study in that database, or no SQLite file at all (a
            read creates nothing).
    """
    require_database(storage_url, name)
    storage = create_storage(storage_url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in storage.get_all_studies()]
        raise StudyNotFoundError(
            f"no study {name!r} in {redact_url(storage_url)} (studies there: {', '.join(names) or 'none'})"
        ) from None


# Every RUNNING trial of a study with its latest heartbeat (if any) and the database's clock,
# which stamped that heartbeat. One round trip.
_RUNNING_QUERY = sa.text(
    "SELECT t.trial_id, h.heartbeat, CURRENT_TIMESTAMP FROM trials t "
    "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id WHERE t.study_id = :sid AND t.state = 'RUNNING'"
)
_CONTINUED_QUERY = sa.text(
    "SELECT a.value_json FROM trial_system_attributes a JOIN trials t ON a.trial_id = t.trial_id "
    "WHERE t.study_id = :sid AND a.key = :continues"
)


def _when(value: object) -> datetime.datetime | None:
    if isinstance(value, str):  # SQLite hands raw text back for a text() query
        value = datetime.datetime.fromisoformat(value)
    return value.replace(tzinfo=None) if isinstance(value, datetime.datetime) else None


def fail_lost_trials(
    study: optuna.Study,
    storage: optuna.storages.RDBStorage,
    sid: int,
    grace_s: float,
    unbeaten: dict[int, float],
) -> int:
    """Fail RUNNING trials whose orchestrator died, and continue them; return how many.

    A trial is lost when its heartbeat is older than the grace period by the database's
    clock (as Optuna's ``fail_stale_trials`` sees it) or, if it has none, when it has had
    none for that long: its orchestrator died between starting it and its first beat.
    The latter is timed from when this process first saw the trial without a heartbeat
    (``unbeaten``, kept by the caller between calls: trial id -> ``time.monotonic()``), as
    its start time comes from the clock of the host that started it, perhaps in another
    time zone.

    Each lost trial's continuation (the storage's stale-trial callback) is queued *before*
    the trial is failed. A crash between the two writes leaves the trial RUNNING, to be
    found lost again and failed without a second continuation; the other order would
    leave a failed trial that nothing continues. A trial that had failed on its own with
    its retries used up (``NOT_CONTINUED_ATTR``) is failed, not continued. Call it under
    the study's lock.
    """
    with storage.engine.connect() as conn:
        rows = conn.execute(_RUNNING_QUERY, {"sid": sid}).all()
    now = time.monotonic()
    lost_ids = []
    for trial_id, beat, db_now in rows:
        beat, db_now = _when(beat), _when(db_now)
        if beat is not None and db_now is not None:
            if (db_now - beat).total_seconds() > grace_s:
                lost_ids.append(trial_id)
        elif now - unbeaten.setdefault(trial_id, now) >= grace_s:
            lost_ids.append(trial_id)
    # Forget trials that have beaten, ended, or are failed below.
    keep = {trial_id for trial_id, beat, _ in rows if beat is None} - set(lost_ids)
    for trial_id in set(unbeaten) - keep:
        del unbeaten[trial_id]
    if not lost_ids:
        return 0
    callback = storage.get_heartbeat_stale_trial_callback()
    continued: set[int] = set()
    if callback is not None:
        with storage.engine.connect() as conn:
            marks = conn.execute(_CONTINUED_QUERY, {"sid": sid, "continues": CONTINUES_ATTR}).scalars()
            continued = {int(json.loads(m)["trial"]) for m in marks}
    lost = 0
    for trial_id in lost_ids:
        trial = storage.get_trial(trial_id)
        if trial.state is not TrialState.RUNNING:
            continue
        if callback is not None and trial.number not in continued and NOT_CONTINUED_ATTR not in trial.system_attrs:
            callback(study, trial)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                lost += 1
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


# One round trip: the count of each state, and beside it the number of failed trials that
# were retried (an uncorrelated subquery, evaluated once). No trials: no rows, no retries.
_BUDGET_QUERY = sa.text(
    "SELECT state, COUNT(*), (SELECT COUNT(DISTINCT t.trial_id) FROM trial_system_attributes a "
    "JOIN trials t ON a.trial_id = t.trial_id WHERE t.study_id = :sid AND a.key IN ('failed_trial', :continues)) "
    "FROM trials WHERE study_id = :sid GROUP BY state"
)


def budget(storage: optuna.storages.RDBStorage, sid: int, n_trials: int, conn: sa.Connection | None = None) -> Budget:
    """Count finished trials of study ``sid``, a retried failure counting once (as its retry).

    Constant work per call: one aggregate query (on ``conn`` if given), not a load of every trial.
    """
    try:
        if conn is not None:
            rows = conn.execute(_BUDGET_QUERY, {"sid": sid, "continues": CONTINUES_ATTR}).all()
        else:
            with storage.engine.connect() as c:
                rows = c.execute(_BUDGET_QUERY, {"sid": sid, "continues": CONTINUES_ATTR}).all()
    except sa.exc.SQLAlchemyError as e:
        raise StorageError(f"cannot count trials: {e.__class__.__name__}") from None
    counts = {str(state).split(".")[-1]: int(n) for state, n, _ in rows}
    retried = int(rows[0][2]) if rows else 0
    done = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0) - retried
    return Budget(done, counts.get("RUNNING", 0), counts.get("WAITING", 0), n_trials)


def report(trial: optuna.Trial, value: float, step: int) -> bool:
    """Record ``value`` as the trial's intermediate value at ``step``; whether to prune it.

    Optuna's ``Trial.report`` refuses studies of several objectives (it prunes on one value),
    so there the value is only recorded, on the first metric's curve, and never prunes.
    """
    if len(trial.study.directions) > 1:
        trial.study._storage.set_trial_intermediate_value(trial._trial_id, step, value)  # noqa: SLF001
        return False
    trial.report(value, step)
    return trial.should_prune()


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    state: TrialState,
    values: Sequence[float] | None = None,
    *,
    reread: bool = False,
) -> FrozenTrial:
    """End ``trial`` in ``state`` (with ``values`` when COMPLETE); return it as it is now stored.

    The same as ``study.tell`` without its second read of the trial from the database
    (a query per table of trial data, ~2 ms on SQLite and more on PostgreSQL, about a
    tenth of a trivial trial's cost, see benchmarks/overhead.py): the returned trial is
    built from the copy the ``Trial`` keeps of everything written through it, as
    ``Study.optimize`` does. The sampler, pruner and storage see exactly what
    ``study.tell`` would give them. ``reread=True`` (for trials that other processes wrote
    to, through Trial objects of their own) reads the trial back as ``study.tell`` does.
    """
    told = values if state is TrialState.COMPLETE else None
    if _tell_with_warning is None or reread:
        return study.tell(trial, told, state=state)
    state, stored, _ = _tell_with_warning(study=study, trial=trial, value_or_values=told, state=state)
    frozen = copy.deepcopy(trial._cached_frozen_trial)  # noqa: SLF001 - see above
    frozen.state = state
    frozen.values = stored
    frozen.datetime_complete = datetime.datetime.now()
    return frozen
