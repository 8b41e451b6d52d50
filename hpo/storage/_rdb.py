"""Opening the study database with settings that are safe for many local processes.

Studies live in Optuna's own schema (``optuna.storages.RDBStorage``), so Optuna's tools
and optuna-dashboard read what `hpo` writes. The only SQL of our own is
:func:`count_trials`: Optuna offers no count, and loading every trial to count them makes
the cost of a trial grow with the size of the study.
"""

from __future__ import annotations

import sqlite3
import warnings
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from hpo.exceptions import SpecError, StorageError, StudyNotFoundError
from hpo.storage._lock import creation_lock

__all__ = ["check_url", "count_trials", "create_storage", "redact_url", "require_database"]

# Seconds a SQLite writer waits for the lock before "database is locked".
_SQLITE_BUSY_TIMEOUT_S = 120
# Seconds after which a pooled server connection is replaced rather than reused.
_POOL_RECYCLE_S = 600


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable database URL>"


def check_url(url: str, *, driver: bool = False) -> URL:
    """Parse the URL of a study database (``postgresql://`` means psycopg 3), or raise
    SpecError (key ``storage``) saying why no study can be kept there: not a URL, an unknown
    database, an in-memory SQLite database (it ends with the process) or, with ``driver``,
    a database driver that is not installed here (validating a file for another machine
    does not need it)."""
    try:
        u = make_url(url)
    except ArgumentError:
        shown = url if "@" not in url else "...@" + url.rsplit("@", 1)[1]  # never a password
        raise SpecError(
            f"not a database URL (e.g. sqlite:///hpo.db, postgresql://user@host/db): {shown!r}", key="storage"
        ) from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver we ship
    shown = redact_url(url)
    try:
        dialect = u.get_dialect()
    except NoSuchModuleError:
        raise SpecError(f"unknown database {u.drivername!r} in {shown!r}: use sqlite, postgresql or mysql",
                        key="storage") from None
    if u.get_backend_name() == "sqlite" and (not u.database or u.database == ":memory:"):
        raise SpecError(
            f"{shown!r} is an in-memory SQLite database, which ends with the process: name a file, "
            "e.g. sqlite:///hpo.db",
            key="storage",
        )
    if driver:
        try:
            dialect.import_dbapi()
        except ImportError as e:
            hint = " (pip install 'hpo[postgres]')" if u.drivername == "postgresql+psycopg" else (
                " (postgresql:// uses psycopg 3, which hpo[postgres] installs)" if u.get_backend_name() == "postgresql"
                else "")
            raise SpecError(f"the driver for {u.drivername!r} is not installed{hint}: {e}", key="storage") from None
    return u


def require_database(url: str, study: str) -> None:
    """Raise StudyNotFoundError for a SQLite database file that does not exist, so a command
    that only reads study ``study`` says so instead of creating the file."""
    u = check_url(url)
    if u.get_backend_name() == "sqlite" and not Path(u.database or "").expanduser().is_file():
        raise StudyNotFoundError(f"no study {study!r}: there is no database file {u.database!r}")


def _normalize(url: str) -> str:
    u = check_url(url, driver=True)
    if u.get_backend_name() == "sqlite":  # a file: check_url refuses an in-memory database
        db = Path(u.database).expanduser()
        db.parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers and one writer work at once; it is a property of the file, set
        # once, outside any transaction (SQLite ignores it inside one).
        with closing(sqlite3.connect(db, timeout=_SQLITE_BUSY_TIMEOUT_S)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    return u.render_as_string(hide_password=False)


def create_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_trial_callback: Callable[[optuna.Study, Any], None] | None = None,
) -> optuna.storages.RDBStorage:
    """Open (creating if needed) the study database at ``url``.

    SQLite gets WAL journaling and a long busy timeout so several processes on one
    machine can share the file; server connections idle for 10 minutes are renewed.

    Args:
        url: SQLAlchemy URL; ``postgresql://`` uses the psycopg 3 driver.
        heartbeat_interval: Seconds between heartbeats of running trials (None: off).
        grace_period: Seconds without a heartbeat after which a RUNNING trial is stale.
        stale_trial_callback: Called with each trial failed for being stale.

    Raises:
        SpecError: ``url`` is not a database URL.
        StorageError: The database cannot be reached.
    """
    full = _normalize(url)
    backend = make_url(full).get_backend_name()
    kwargs: dict = {}
    if backend == "sqlite":
        kwargs = {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_S}}
    else:
        # No pool_pre_ping: its round trip before every Optuna operation costs ~6% of a
        # trial on PostgreSQL. Connections idle longer than a server or firewall may keep
        # them are replaced instead (a timestamp check, free); one the server dropped
        # otherwise fails one operation, and SQLAlchemy then renews the whole pool.
        kwargs = {"pool_recycle": _POOL_RECYCLE_S}
    try:
        with warnings.catch_warnings(), creation_lock(full):
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                full,
                engine_kwargs=kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=stale_trial_callback,
            )
            _add_key_index(storage.engine)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        msg = str(e).replace(make_url(full).password or "\0", "***")
        raise StorageError(f"cannot open study database {redact_url(full)}: {msg.splitlines()[0]}") from None
    return storage


# Optuna indexes trial system attributes by (trial_id, key) only; counting a study's retried
# trials by key (hpo.execution.budget, once per trial started) would then scan the
# attributes of every study in the database. An extra index leaves Optuna's schema readable
# by Optuna and its tools, which never see it.
_KEY_INDEX = "hpo_ix_trial_system_attributes_key"


def _add_key_index(engine: sa.Engine) -> None:
    """Create the index on ``trial_system_attributes.key`` if the database lacks it."""
    if engine.dialect.name not in ("sqlite", "postgresql"):
        return  # MySQL cannot index a 512-character utf8mb4 key whole; it scans instead
    if any(ix["name"] == _KEY_INDEX for ix in sa.inspect(engine).get_indexes("trial_system_attributes")):
        return
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {_KEY_INDEX} ON trial_system_attributes (key)"))


def count_trials(storage: optuna.storages.RDBStorage, study_id: int) -> dict[str, int]:
    """Number of trials of a study in each state, e.g. ``{"COMPLETE": 12, "RUNNING": 1}``.

    One ``GROUP BY`` query: constant work per call, however large the study.
    """
    query = sa.text("SELECT state, COUNT(*) FROM trials WHERE study_id = :sid GROUP BY state")
    try:
        with storage.engine.connect() as conn:
            rows = conn.execute(query, {"sid": study_id}).all()
    except SQLAlchemyError as e:
        raise StorageError(f"cannot count trials: {e.__class__.__name__}") from None
    return {str(state).split(".")[-1]: int(n) for state, n in rows}
