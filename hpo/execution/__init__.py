"""Running trials: the study loop, the executors and what a trial function sees."""

from __future__ import annotations

from hpo.execution._base import Executor, TrialChannel, TrialJob
from hpo.execution._context import TrialContext, TrialDiverged, TrialInterrupted
from hpo.execution._inprocess import InProcessExecutor, context_for
from hpo.execution._optimize import optimize
from hpo.execution._outcome import Outcome, TrialResult, classify
from hpo.execution._resume import (
    CHECKPOINT_ATTR,
    CONTINUES_ATTR,
    ERROR_ATTR,
    METRICS_ATTR,
    PROMOTED,
    PROMOTED_AT_END,
    RESUME_ATTR,
    continuation_mark,
    continued_trial,
    enqueue_continuation,
    latest_checkpoint,
)
from hpo.execution._study import SPEC_ATTR, Budget, budget, load_study, open_study
from hpo.spec import apply_engine_params

__all__ = [
    "CHECKPOINT_ATTR",
    "CONTINUES_ATTR",
    "ERROR_ATTR",
    "RESUME_ATTR",
    "METRICS_ATTR",
    "PROMOTED",
    "PROMOTED_AT_END",
    "SPEC_ATTR",
    "Budget",
    "Executor",
    "InProcessExecutor",
    "Outcome",
    "TrialChannel",
    "TrialContext",
    "TrialDiverged",
    "TrialInterrupted",
    "TrialJob",
    "TrialResult",
    "apply_engine_params",
    "budget",
    "classify",
    "context_for",
    "continuation_mark",
    "continued_trial",
    "enqueue_continuation",
    "latest_checkpoint",
    "load_study",
    "open_study",
    "optimize",
]
