"""Pruners: the study file's ``pruner:`` section mapped onto Optuna's pruners.

``asha_promote`` adds :class:`PromotingASHAPruner`, which pauses trials instead of
stopping them and resumes them from their checkpoints once they are promotable
(docs/PRUNING.md).
"""

from __future__ import annotations

from hpo.pruning._asha import PromotingASHAPruner, rung_steps
from hpo.pruning._base import PromotingPruner
from hpo.pruning._factory import create_pruner

__all__ = ["PromotingASHAPruner", "PromotingPruner", "create_pruner", "rung_steps"]
