"""One observation per configuration for samplers that learn from past trials.

A paused trial that ``asha_promote`` promotes goes on in a new trial (a continuation) with
the same parameters and the learning curve so far; the paused one stays PRUNED at its
rung. A model-based sampler such as TPE would then see the configuration twice: the
continuation among the good trials and its paused ancestor, ranked at a lower step, among
the bad ones, which weighs against exactly the configurations that did best.
:class:`LineageSampler` shows the sampler only the latest trial of each lineage: a trial
another trial continues is left out. Optuna has no notion of continuations, so this is ours.
"""

from __future__ import annotations

import copy
from collections.abc import Container, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.execution._resume import continued_trial

__all__ = ["LineageSampler", "latest_of_lineages"]


def latest_of_lineages(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """``trials`` without those that another, finished, of ``trials`` continues.

    A continuation still waiting or running does not hide the trial it continues: until it
    ends, that trial holds what is known.
    """
    continued = {n for t in trials if t.state.is_finished() and (n := continued_trial(t)) is not None}
    return [t for t in trials if t.number not in continued] if continued else list(trials)


class _LatestView:
    """The study as the wrapped sampler sees it: its trials are the latest of each lineage."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self, deepcopy: bool = True, states: Container[TrialState] | None = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=False, states=states, use_cache=use_cache)  # noqa: SLF001
        kept = latest_of_lineages(trials)
        return copy.deepcopy(kept) if deepcopy else kept

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class LineageSampler(optuna.samplers.BaseSampler):
    """Wraps ``base`` so that it learns from the latest trial of each lineage only.

    Sampling goes through a view of the study without continued trials; the hooks around a
    trial (``before_trial``, ``after_trial``) get the study itself.
    """

    def __init__(self, base: optuna.samplers.BaseSampler) -> None:
        self.base = base

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.base.infer_relative_search_space(_LatestView(study), trial)  # type: ignore[arg-type]

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.base.sample_relative(_LatestView(study), trial, search_space)  # type: ignore[arg-type]

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        view = _LatestView(study)
        return self.base.sample_independent(view, trial, param_name, param_distribution)  # type: ignore[arg-type]

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
