"""One function from :class:`~hpo.spec.SamplerSpec` to an Optuna sampler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from hpo._options import construct
from hpo.sampling._lineage import LineageSampler
from hpo.spec._space import grid_search_space

if TYPE_CHECKING:
    from hpo.spec import StudySpec

__all__ = ["create_sampler"]


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` call, which only works inside
    ``Study.optimize``; the study loop asks :meth:`is_exhausted` instead."""

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        """Nothing to do: exhaustion is checked by the loop before each new trial."""


class _BruteForceSampler(optuna.samplers.BruteForceSampler):
    """Optuna's brute-force sampler; where it would call ``study.stop()`` (possible only inside
    ``Study.optimize``) it sets :attr:`exhausted`, which the study loop reads instead."""

    exhausted = False

    def after_trial(self, study: optuna.Study, trial: Any, state: Any, values: Any) -> None:
        """Optuna's bookkeeping; notes when every combination has been tried."""
        try:
            super().after_trial(study, trial, state, values)
        except RuntimeError as e:
            if "Study.stop" not in str(e):
                raise
            self.exhausted = True


_SAMPLERS: dict[str, Any] = {
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
    "grid": _GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "nsgaii": optuna.samplers.NSGAIISampler,
    "bruteforce": _BruteForceSampler,
}


# Samplers whose proposals depend on the values of past trials.
_LEARNING = frozenset({"tpe", "cmaes", "gp", "nsgaii"})


def create_sampler(spec: StudySpec) -> optuna.samplers.BaseSampler:
    """Build the sampler ``spec.sampler`` names, seeded as given.

    Raises:
        KeyError_: An option is unknown or invalid, or the sampler needs a missing package.
    """
    s = spec.sampler
    fixed: dict[str, Any] = {"seed": s.seed}
    if s.type == "grid":
        fixed["search_space"] = grid_search_space(spec.search_space)
    if s.type == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            from hpo.spec._model import KeyError_

            raise KeyError_("sampler.type", "the cmaes sampler needs `pip install cmaes`") from None
    for key, value in s.options.items():
        # Optuna accepts negative counts silently and misbehaves later: refuse them here.
        if (key.startswith("n_") or key.endswith("_size")) and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            from hpo.spec._model import KeyError_

            raise KeyError_(f"sampler.{key}", f"must be a non-negative integer (got {value!r})")
    sampler = construct(_SAMPLERS[s.type], s.options, "sampler", fixed)
    if s.type in _LEARNING and spec.pruner.type == "asha_promote":
        return LineageSampler(sampler)  # continuations of paused trials must not count twice
    return sampler
