"""Running trials: the study loop, the executors and what a trial function sees."""

from __future__ import annotations

from hpo.execution._base import Executor, TrialJob
from hpo.execution._context import TrialContext, TrialDiverged, TrialInterrupted
from hpo.execution._inprocess import InProcessExecutor
from hpo.execution._optimize import ERROR_ATTR, METRICS_ATTR, apply_engine_params, optimize
from hpo.execution._outcome import Outcome, TrialResult, classify
from hpo.execution._study import SPEC_ATTR, Budget, budget, load_study, open_study

__all__ = [
    "ERROR_ATTR",
    "METRICS_ATTR",
    "SPEC_ATTR",
    "Budget",
    "Executor",
    "InProcessExecutor",
    "Outcome",
    "TrialContext",
    "TrialDiverged",
    "TrialInterrupted",
    "TrialJob",
    "TrialResult",
    "apply_engine_params",
    "budget",
    "classify",
    "load_study",
    "open_study",
    "optimize",
]
