"""What users see: live progress while a study runs, and tables of its trials."""

from __future__ import annotations

from hpo.reporting._progress import PlainProgress, Progress, RichProgress, make_progress
from hpo.reporting._tables import best_summary, status_summary, trial_rows, write_trials

__all__ = [
    "PlainProgress",
    "Progress",
    "RichProgress",
    "best_summary",
    "make_progress",
    "status_summary",
    "trial_rows",
    "write_trials",
]
