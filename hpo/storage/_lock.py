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
def creation_lock(url: str) -> Iterator[None]:
    """Serialize schema creation among processes opening the same new database.

    Optuna creates its tables on first open; two processes doing so at once collide.
    """
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite" and u.database and u.database != ":memory:":
        with open(Path(u.database).expanduser().with_suffix(".hpo-lock"), "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    elif backend == "postgresql":
        engine = sa.create_engine(u, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _CREATE_KEY})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _CREATE_KEY})
                    conn.commit()
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
        lock_path = Path(url.database).expanduser().with_suffix(".hpo-lock")
        with open(lock_path, "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    elif backend == "postgresql":
        with storage.engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    elif backend in ("mysql", "mariadb"):
        with storage.engine.connect() as conn:
            conn.execute(sa.text("SELECT GET_LOCK(:k, -1)"), {"k": f"hpo{key}"})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:k)"), {"k": f"hpo{key}"})
    else:
        yield
