"""The interface of pruners that pause trials instead of stopping them for good."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from optuna.pruners import BasePruner

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["PromotingPruner"]


class PromotingPruner(BasePruner, abc.ABC):
    """A pruner whose pruned trials are *paused*: later results may promote them again.

    A paused trial is an ordinary PRUNED trial whose latest checkpoint (user attribute
    ``hpo:checkpoint``) was saved at its last reported step. The study loop calls
    :meth:`next_promotion` before it asks for a new trial and, when a trial is returned,
    queues a continuation of it: a new trial with the same parameters, the learning curve up
    to the pause step and system attribute ``hpo:continues = {"trial": n, "reason":
    "promoted"}``, which loads the checkpoint and trains on from that step.

    Contract: the methods read everything they decide on from ``study``'s storage, so any
    number of threads and processes may call them at once; they keep no decisions of their
    own between calls. :meth:`next_promotion` never returns a trial that already has a
    continuation, and only trials for which :meth:`may_promote` is true.
    """

    @abc.abstractmethod
    def next_promotion(self, study: optuna.Study, budget_spent: bool = False) -> FrozenTrial | None:
        """The paused trial to resume next, or None when no paused trial has earned it.

        ``budget_spent``: the study starts no new trials any more, so no later results will
        come to promote a paused trial; a pruner may then promote more leniently.
        """

    @abc.abstractmethod
    def may_promote(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether the finished ``trial`` is paused and may still be promoted.

        Checkpoint retention keeps the checkpoints of such trials.
        """
