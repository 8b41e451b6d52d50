"""The study database: Optuna's schema, reached through SQLAlchemy."""

from __future__ import annotations

from hpo.storage._lock import StudyLock, study_lock
from hpo.storage._rdb import check_url, count_trials, create_storage, redact_url, require_database

__all__ = [
    "StudyLock",
    "check_url",
    "count_trials",
    "create_storage",
    "redact_url",
    "require_database",
    "study_lock",
]
