"""Checks of ``pruner:`` options, so a bad value is reported as ``pruner.<key>`` with the value.

Optuna validates most options itself, but some only when the first trial reports
(``HyperbandPruner``) and its messages cannot name the key of the study file. The checks
here run first; unknown keys and anything they do not cover are left to
:func:`hpo._options.construct`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hpo.spec._model import KeyError_

__all__ = ["check_options"]


@dataclass(frozen=True, slots=True)
class _Int:
    """An integer (not a bool) ``>= low``, or one of the strings in ``words``."""

    low: int
    words: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and value in self.words:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < self.low:
            alt = "".join(f" or {w!r}" for w in self.words)
            return f"must be an integer >= {self.low}{alt}"
        return None


@dataclass(frozen=True, slots=True)
class _Number:
    """A finite number in ``[low, high]`` (None: unbounded)."""

    low: float | None = None
    high: float | None = None

    def problem(self, value: Any) -> str | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (self.low is None or value >= self.low) and (self.high is None or value <= self.high)
        if ok:
            return None
        if self.low is not None and self.high is not None:
            return f"must be a number in [{self.low:g}, {self.high:g}]"
        return f"must be a number >= {self.low:g}" if self.low is not None else "must be a finite number"


_MEDIAN = {
    "n_startup_trials": _Int(0),
    "n_warmup_steps": _Int(0),
    "interval_steps": _Int(1),
    "n_min_trials": _Int(1),
}
_SHA = {"reduction_factor": _Int(2), "min_early_stopping_rate": _Int(0), "bootstrap_count": _Int(0)}
_THRESHOLD = {"lower": _Number(), "upper": _Number(), "n_warmup_steps": _Int(0), "interval_steps": _Int(1)}

_RULES: dict[str, dict[str, _Int | _Number]] = {
    "none": {},
    "median": _MEDIAN,
    "percentile": {"percentile": _Number(0, 100), **_MEDIAN},
    "successive_halving": {"min_resource": _Int(1, ("auto",)), **_SHA},
    "asha": {"min_resource": _Int(1, ("auto",)), **_SHA},
    "hyperband": {
        "min_resource": _Int(1),
        "max_resource": _Int(1, ("auto",)),
        "reduction_factor": _Int(2),
        "bootstrap_count": _Int(0),
    },
    "threshold": _THRESHOLD,
    "patience": {"patience": _Int(0), "min_delta": _Number(0)},
    "wilcoxon": {"p_threshold": _Number(0, 1), "n_startup_steps": _Int(0)},
    "asha_promote": {
        "min_resource": _Int(1),
        "max_resource": _Int(1),
        "reduction_factor": _Int(2),
        "min_early_stopping_rate": _Int(0),
    },
}


def check_options(kind: str, options: dict[str, Any], key: str, max_epochs: int) -> None:
    """Check the options of a ``kind`` pruner given under ``key`` (e.g. ``"pruner"``).

    Args:
        kind: The pruner type of the study file.
        options: Its options other than ``type`` and ``wrapped``.
        key: Where the pruner sits in the study file.
        max_epochs: ``trial.max_epochs``, the last step a trial reports.

    Raises:
        KeyError_: An option has a bad value; the key is ``<key>.<option>``.
    """
    for name, rule in _RULES[kind].items():
        if name in options and (problem := rule.problem(options[name])) is not None:
            raise KeyError_(f"{key}.{name}", f"{problem} (got {name}={options[name]!r})")
    _check_together(kind, options, key, max_epochs)


def _check_together(kind: str, o: dict[str, Any], key: str, max_epochs: int) -> None:
    """Checks that involve several options, or an option and ``trial.max_epochs``."""
    if kind == "percentile" and "percentile" not in o:
        raise KeyError_(f"{key}.percentile", "a percentile pruner needs percentile: a number in [0, 100]")
    if kind == "threshold":
        lower, upper = o.get("lower"), o.get("upper")
        if lower is None and upper is None:
            raise KeyError_(f"{key}.lower", "a threshold pruner needs lower, upper or both")
        if lower is not None and upper is not None and lower >= upper:
            raise KeyError_(f"{key}.upper", f"must be greater than lower (got {lower=}, {upper=})")
    if kind == "hyperband":
        min_resource, max_resource = o.get("min_resource", 1), o.get("max_resource", max_epochs)
        if max_resource != "auto" and min_resource > max_resource:
            raise KeyError_(f"{key}.min_resource", f"must be <= max_resource (got {min_resource=}, {max_resource=})")
    if kind == "asha_promote" and o.get("max_resource", max_epochs) > max_epochs:
        raise KeyError_(
            f"{key}.max_resource",
            f"must be <= trial.max_epochs ({max_epochs}), the step every trial completes at (got "
            f"{o['max_resource']}): a rung at or after it would pause trials at their last step",
        )
    if kind in ("successive_halving", "asha", "asha_promote") and o.get("min_resource", 1) != "auto":
        # Optuna's default reduction_factor is 4; asha_promote's is 3.
        eta = o.get("reduction_factor", 3 if kind == "asha_promote" else 4)
        first = o.get("min_resource", 1) * eta ** o.get("min_early_stopping_rate", 0)
        last = o.get("max_resource", max_epochs) if kind == "asha_promote" else max_epochs
        # asha_promote never pauses at its last step; Optuna's pruner may stop a trial there.
        if first > last or (kind == "asha_promote" and first == last):
            where = "not before" if first == last else "after"
            raise KeyError_(
                f"{key}.min_resource",
                f"the first rung ends at step min_resource * reduction_factor ** min_early_stopping_rate = "
                f"{first}, {where} the last step ({last}): no trial would ever be stopped",
            )
