"""A lock per study shared by every process that runs it, so budgets hold across processes.

Checking the budget and creating the next trial must happen as one step, or several
``hpo optimize`` processes on one study overshoot ``n_trials``. SQLite (one machine)
uses an ``flock`` on a file beside the database; PostgreSQL uses a session advisory
lock; MySQL/MariaDB ``GET_LOCK``.
"""

from __future__ import annotations

import fcntl
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import make_url

__all__ = ["creation_lock", "study_lock"]

_CREATE_KEY = zlib.crc32(b"hpo:create-schema") & 0x7FFFFFFF


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
    conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
    try:
        yield
    finally:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()


@contextmanager
def creation_lock(url: str) -> Iterator[None]:
    """Serialize schema creation among processes opening the same new database.

    Optuna creates its tables on first open; two processes doing so at once collide.
    """
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite" and u.database and u.database != ":memory:":
        with _flock(Path(u.database).expanduser().with_suffix(".hpo-lock")):
            yield
    elif backend == "postgresql":
        engine = sa.create_engine(u, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn, _advisory(conn, _CREATE_KEY):
                yield
        finally:
            engine.dispose()
    else:
        yield


@contextmanager
def study_lock(storage: optuna.storages.RDBStorage, study_name: str) -> Iterator[None]:
    """Hold the cross-process lock of ``study_name`` in ``storage`` for the block."""
    url = make_url(storage.url)
    backend = url.get_backend_name()
    key = zlib.crc32(f"hpo:{study_name}".encode()) & 0x7FFFFFFF
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            yield
            return
        with _flock(Path(url.database).expanduser().with_suffix(".hpo-lock")):
            yield
    elif backend == "postgresql":
        with storage.engine.connect() as conn, _advisory(conn, key):
            yield
    elif backend in ("mysql", "mariadb"):
        with storage.engine.connect() as conn:
            conn.execute(sa.text("SELECT GET_LOCK(:k, -1)"), {"k": f"hpo{key}"})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:k)"), {"k": f"hpo{key}"})
    else:
        yield
