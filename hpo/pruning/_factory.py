"""One function from :class:`~hpo.spec.PrunerSpec` to a pruner: Optuna's, or ``asha_promote``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from hpo._options import construct
from hpo.pruning._asha import PromotingASHAPruner
from hpo.pruning._checks import check_options
from hpo.spec._model import KeyError_

if TYPE_CHECKING:
    from hpo.spec import PrunerSpec, StudySpec

__all__ = ["create_pruner"]

_PRUNERS: dict[str, Any] = {
    "none": optuna.pruners.NopPruner,
    "median": optuna.pruners.MedianPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "asha": optuna.pruners.SuccessiveHalvingPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "patience": optuna.pruners.PatientPruner,
    "wilcoxon": optuna.pruners.WilcoxonPruner,
    "asha_promote": PromotingASHAPruner,
}


def create_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Build the pruner ``spec.pruner`` names.

    ``max_resource`` of ``hyperband`` and ``asha_promote`` defaults to ``trial.max_epochs``;
    ``patience`` defaults to 3.

    Raises:
        KeyError_: An option is unknown or invalid; its key is ``pruner.<option>``.
    """
    return _build(spec.pruner, spec, "pruner")


def _build(p: PrunerSpec, spec: StudySpec, key: str) -> optuna.pruners.BasePruner:
    opts = p.options
    check_options(p.type, opts, key, spec.trial.max_epochs)
    fixed: dict[str, Any] = {}
    if p.type in ("hyperband", "asha_promote"):
        opts.setdefault("max_resource", spec.trial.max_epochs)
    if p.type == "asha_promote" and not spec.checkpoints.enabled:
        raise KeyError_(
            f"{key}.type",
            "asha_promote resumes paused trials from their checkpoints, but checkpoints.enabled is false",
        )
    if p.type == "patience":
        from hpo.spec import PrunerSpec

        inner = p.wrapped or PrunerSpec()
        if inner.type == "asha_promote":
            raise KeyError_(
                f"{key}.wrapped.type",
                "asha_promote cannot be wrapped: the study loop must see it to resume paused trials",
            )
        fixed["wrapped_pruner"] = None if inner.type == "none" else _build(inner, spec, f"{key}.wrapped")
        opts.setdefault("patience", 3)
    return construct(_PRUNERS[p.type], opts, key, fixed)
