"""A lock per study shared by every process that runs it, so budgets hold across processes.

Checking the budget and creating the next trial must happen as one step, or several
``hpo optimize`` processes on one study overshoot ``n_trials``. SQLite (one machine)
uses an ``flock`` on a file beside the database; PostgreSQL uses a session advisory
lock; MySQL/MariaDB ``GET_LOCK``. A server lock is taken on a pooled connection in autocommit
mode, which :func:`study_lock` hands to the block: queries made on it while
the lock is held cost one round trip each, with no transaction to begin or end.
"""

from __future__ import annotations

import fcntl
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

__all__ = ["StudyLock", "creation_lock", "study_lock"]

_CREATE_KEY = zlib.crc32(b"hpo:create-schema") & 0x7FFFFFFF
_PG_LOCK, _PG_UNLOCK = "SELECT pg_advisory_lock(:k)", "SELECT pg_advisory_unlock(:k)"
_MYSQL_LOCK, _MYSQL_UNLOCK = "SELECT GET_LOCK(:k, -1)", "SELECT RELEASE_LOCK(:k)"


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the block."""
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextmanager
def _advisory(conn: sa.Connection, key: int) -> Iterator[None]:
    """A PostgreSQL session advisory lock on ``conn`` for the block."""
    conn.execute(sa.text(_PG_LOCK), {"k": key})
    try:
        yield
    finally:
        conn.execute(sa.text(_PG_UNLOCK), {"k": key})
        conn.commit()


def _lock_file(url: URL) -> Path | None:
    """The lock file beside a SQLite database file; None for other databases."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).expanduser().with_suffix(".hpo-lock")
    return None


@contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Serialize schema creation among processes opening the same new database.

    Optuna creates its tables on first open; two processes doing so at once collide.
    """
    u = make_url(url)
    if (lock_file := _lock_file(u)) is not None:
        with _flock(lock_file):
            yield
    elif u.get_backend_name() == "postgresql":
        engine = sa.create_engine(u, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn, _advisory(conn, _CREATE_KEY):
                yield
        finally:
            engine.dispose()
    else:
        yield


class StudyLock:
    """The cross-process lock of one study, for an orchestrator that takes it again and again.

    It keeps what it locks with between uses: the lock file open (SQLite), or one
    connection in autocommit mode (PostgreSQL, MySQL), so each use costs the lock and
    unlock statements and nothing more: no pool checkout, no transaction. A connection
    the server dropped is replaced once, at the next use.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, study_name: str) -> None:
        url = make_url(storage.url)
        backend = url.get_backend_name()
        key = zlib.crc32(f"hpo:{study_name}".encode()) & 0x7FFFFFFF
        self._path = _lock_file(url)
        self._statements = {
            "postgresql": (_PG_LOCK, _PG_UNLOCK, key),
            "mysql": (_MYSQL_LOCK, _MYSQL_UNLOCK, f"hpo{key}"),
            "mariadb": (_MYSQL_LOCK, _MYSQL_UNLOCK, f"hpo{key}"),
        }.get(backend)
        self._engine: sa.Engine | None = None
        if self._statements is not None:  # the storage's own pool, connections in autocommit mode
            self._engine = storage.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._file: Any = None
        self._conn: sa.Connection | None = None
        self._guard = threading.Lock()  # one holder per process at a time

    @contextmanager
    def hold(self) -> Iterator[sa.Connection | None]:
        """Hold the lock for the block; yields the connection that holds a server-side lock
        (for queries made under it), or None where the lock is a file or not needed."""
        with self._guard:
            if self._path is not None:
                if self._file is None:
                    self._file = open(self._path, "a")  # noqa: SIM115 - kept open between uses
                fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
                try:
                    yield None
                finally:
                    fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            elif self._statements is not None:
                lock, unlock, key = self._statements
                conn = self._lock(lock, key)
                try:
                    yield conn
                finally:
                    conn.execute(sa.text(unlock), {"k": key})
            else:
                yield None

    def _lock(self, statement: str, key: Any) -> sa.Connection:
        assert self._engine is not None
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._engine.connect()
            try:
                self._conn.execute(sa.text(statement), {"k": key})
                return self._conn
            except sa.exc.DBAPIError as e:
                self._conn.close()
                self._conn = None
                if attempt == 2 or not e.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release what the lock keeps (file, connection)."""
        with self._guard:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@contextmanager
def study_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[sa.Connection | None]:
    """Hold the cross-process lock of ``study_name`` in ``storage`` for the block, once
    (see :class:`StudyLock` to take it repeatedly).

    Yields the autocommit connection that holds a server-side lock (PostgreSQL, MySQL),
    for queries made under the lock; None where the lock is a file or not needed.
    """
    lock = StudyLock(storage, study_name)
    try:
        with lock.hold() as conn:
            yield conn
    finally:
        lock.close()
