"""One function from :class:`~hpo.spec.PrunerSpec` to an Optuna pruner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna

from hpo._options import construct

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
}


def create_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """Build the pruner ``spec.pruner`` names.

    ``hyperband``'s ``max_resource`` defaults to ``trial.max_epochs``.

    Raises:
        KeyError_: An option is unknown or invalid.
    """
    return _build(spec.pruner, spec, "pruner")


def _build(p: PrunerSpec, spec: StudySpec, key: str) -> optuna.pruners.BasePruner:
    fixed: dict[str, Any] = {}
    opts = p.options
    if p.type == "hyperband" and "max_resource" not in opts:
        fixed["max_resource"] = spec.trial.max_epochs
    if p.type == "patience":
        from hpo.spec import PrunerSpec

        inner = p.wrapped or PrunerSpec()
        fixed["wrapped_pruner"] = None if inner.type == "none" else _build(inner, spec, f"{key}.wrapped")
        opts.setdefault("patience", 3)
    return construct(_PRUNERS[p.type], opts, key, fixed)
