"""Asynchronous successive halving that pauses trials and promotes them later.

The promotion rule of ASHA (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning", MLSys, Algorithm 2): a trial that reaches a rung goes on while it
is in the top ``1 / reduction_factor`` of the trials that reached that rung; otherwise it
is paused, and a paused trial is resumed as soon as later, worse trials have made it one of
the top ``1 / reduction_factor`` of its rung. A rung that fewer than ``reduction_factor``
trials have reached promotes none (the paper's ``floor(n / eta)``) until the study's budget
is spent; then its best goes on, so the study ends with trials trained to the end. Optuna's
``SuccessiveHalvingPruner`` lets the best go on at once and stops the losers for good; see
docs/PRUNING.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterable

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from hpo.execution import PROMOTED_AT_END, continuation_mark, continued_trial, latest_checkpoint
from hpo.pruning._base import PromotingPruner

if TYPE_CHECKING:
    import optuna

__all__ = ["PromotingASHAPruner", "rung_steps"]


def rung_steps(
    max_resource: int, min_resource: int, reduction_factor: int, min_early_stopping_rate: int
) -> list[int]:
    """The steps that end rungs: ``min_resource * reduction_factor ** (k + s)`` below ``max_resource``."""
    steps: list[int] = []
    step = min_resource * reduction_factor**min_early_stopping_rate
    while step < max_resource:
        steps.append(step)
        step *= reduction_factor
    return steps


class PromotingASHAPruner(PromotingPruner):
    """ASHA whose pruned trials are paused and resumed from their checkpoint when promotable.

    Rung ``k`` ends at step ``min_resource * reduction_factor ** (k + min_early_stopping_rate)``;
    the rungs are those that end before ``max_resource``, where every trial completes. When a
    trial's report reaches the end of a rung, it is compared with every trial that reached
    that rung (running, paused, completed or failed; a trial and its continuations count
    once): it goes on if its value is among the best ``n // reduction_factor`` of those
    ``n`` values, and is paused (pruned) otherwise. Once the study's budget is spent
    (``next_promotion(study, budget_spent=True)``) the best ``max(1, n // reduction_factor)``
    are promotable, and the trials then promoted are judged by that rule at later rungs too.
    A trial without a checkpoint at the rung's step cannot be resumed, so it is judged by the
    ``max(1, ...)`` rule at once, as Optuna's pruner does. A continuation is
    judged only at rungs it reaches itself, never again at the rung it was promoted from.

    Args:
        max_resource: The last step of a trial (``trial.max_epochs``); never paused there.
        min_resource: The step at which the first rung ends (with ``min_early_stopping_rate``).
        reduction_factor: ``eta``: about one in ``eta`` trials goes on past each rung.
        min_early_stopping_rate: ``s``: skips the first ``s`` rungs.
    """

    def __init__(
        self,
        max_resource: int,
        min_resource: int = 1,
        reduction_factor: int = 3,
        min_early_stopping_rate: int = 0,
    ) -> None:
        for name, value, low in (
            ("max_resource", max_resource, 1),
            ("min_resource", min_resource, 1),
            ("reduction_factor", reduction_factor, 2),
            ("min_early_stopping_rate", min_early_stopping_rate, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, but got {name}={value!r}.")
        self._rungs = rung_steps(max_resource, min_resource, reduction_factor, min_early_stopping_rate)
        if not self._rungs:
            raise ValueError(
                f"The first rung ends at step {min_resource * reduction_factor**min_early_stopping_rate}, "
                f"not before {max_resource=}: no trial would ever be paused."
            )
        self._max_resource = max_resource
        self._eta = reduction_factor
        self._continued: tuple[tuple[int, int], _Trials] | None = None  # see may_promote

    @property
    def rungs(self) -> list[int]:
        """The steps at which rungs end, in increasing order."""
        return list(self._rungs)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial``'s latest report ends a rung on which it is not promotable.

        A second continuation of the same paused trial (two processes promoting it at once)
        is stopped at its first report; the first one goes on.
        """
        step = trial.last_step
        if step is None or step >= self._max_resource:
            return False
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return True
        crossed = _crossed(trial, self._rungs)
        if not crossed and continued_trial(trial) is None:
            return False
        view = _Trials(study.get_trials(deepcopy=False), trial)
        if view.is_duplicate(trial):
            return True
        # Not resumable (stopping it would be for good), or promoted once no new trials come.
        at_least_one = not _saved_at_last_step(trial) or continuation_mark(trial).get("reason") == PROMOTED_AT_END
        return not all(
            self._promotable(value, view.rung_values(r), study.direction, at_least_one) for r in crossed
        )

    def next_promotion(self, study: optuna.Study, budget_spent: bool = False) -> FrozenTrial | None:
        """The paused trial that is now promotable at the highest rung, best value first.

        A candidate was paused at the end of a rung by this pruner (its last report ended
        the rung), has a checkpoint at that step and has no continuation yet. With
        ``budget_spent`` (no new trials will come) the best of a rung that fewer than
        ``reduction_factor`` trials reached is promotable too.
        """
        if len(study.directions) != 1:
            return None
        view = _Trials(study.get_trials(deepcopy=False))
        direction = study.direction
        values = {r: view.rung_values(r) for r in self._rungs}
        candidates = [t for t in view.trials if self._is_paused(t, view)]
        for rung in reversed(self._rungs):
            ok = [
                t
                for t in candidates
                if (crossed := _crossed(t, self._rungs))[-1] == rung
                and all(self._promotable(_value_at(t, r), values[r], direction, budget_spent) for r in crossed)
            ]
            if ok:
                sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
                return min(ok, key=lambda t: (sign * (_value_at(t, rung) or 0.0), t.number))
        return None

    def may_promote(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        """Whether ``trial`` is paused: more trials reaching its rung may yet promote it."""
        # Checkpoint retention asks this of every finished trial in turn. Whether a trial has
        # a continuation changes only when a trial is added, so one reading of the study
        # serves until the trial count changes.
        key = (study._study_id, study._storage.get_n_trials(study._study_id))  # noqa: SLF001
        cached = self._continued
        if cached is None or cached[0] != key:
            cached = (key, _Trials(study.get_trials(deepcopy=False)))
            self._continued = cached
        return self._is_paused(trial, cached[1])

    def _is_paused(self, t: FrozenTrial, view: _Trials) -> bool:
        if t.state != TrialState.PRUNED or t.number in view.continued or view.is_duplicate(t):
            return False
        if t.last_step is None or t.last_step >= self._max_resource or not _crossed(t, self._rungs):
            return False
        if math.isnan(t.intermediate_values[t.last_step]):
            return False
        return _saved_at_last_step(t)

    def _promotable(
        self, value: float | None, competing: list[float], direction: StudyDirection, at_least_one: bool
    ) -> bool:
        """Whether ``value`` is among the best ``n // eta`` of ``competing`` (it included),
        or the best ``max(1, n // eta)`` with ``at_least_one``."""
        if value is None or not competing:
            return False
        slots = len(competing) // self._eta
        if at_least_one:
            slots = max(slots, 1)  # <= len(competing), which is not empty
        if slots == 0:
            return False
        maximize = direction == StudyDirection.MAXIMIZE
        bar = sorted(competing, reverse=maximize)[slots - 1]
        return value >= bar if maximize else value <= bar


def _saved_at_last_step(t: FrozenTrial) -> bool:
    """Whether ``t``'s latest checkpoint is at its last reported step (it can resume there)."""
    ck = latest_checkpoint(t)
    return ck is not None and ck[0] == t.last_step


def _crossed(t: FrozenTrial, rungs: Iterable[int]) -> list[int]:
    """The rung ends that ``t``'s latest report reached (past the step before it)."""
    step = t.last_step
    if step is None:
        return []
    before = max((s for s in t.intermediate_values if s < step), default=0)
    return [r for r in rungs if before < r <= step]


def _value_at(t: FrozenTrial, rung: int) -> float | None:
    """``t``'s value at the first step it reported at or after ``rung``."""
    steps = [s for s in t.intermediate_values if s >= rung]
    return t.intermediate_values[min(steps)] if steps else None


class _Trials:
    """One reading of a study's trials, with continuation chains resolved."""

    def __init__(self, trials: list[FrozenTrial], current: FrozenTrial | None = None) -> None:
        by_number = {t.number: t for t in trials}
        if current is not None:
            by_number[current.number] = current  # fresher than a cached copy
        self.trials = [by_number[n] for n in sorted(by_number)]
        self._by_number = by_number
        self._first_child: dict[int, int] = {}
        for t in self.trials:
            if (p := continued_trial(t)) is not None:
                self._first_child.setdefault(p, t.number)
        self.continued = set(self._first_child)

    def is_duplicate(self, t: FrozenTrial) -> bool:
        """Whether ``t`` continues a trial that an earlier trial already continues."""
        p = continued_trial(t)
        return p is not None and self._first_child.get(p, t.number) != t.number

    def _root(self, t: FrozenTrial) -> int:
        n = t.number
        for _ in range(len(self.trials)):  # bounded: chains cannot loop, but data can be odd
            p = continued_trial(self._by_number[n])
            if p is None or p not in self._by_number:
                break
            n = p
        return n

    def rung_values(self, rung: int) -> list[float]:
        """One value per lineage (a trial and its continuations) that reached ``rung``."""
        out: dict[int, float] = {}
        for t in self.trials:
            if t.state == TrialState.WAITING or self.is_duplicate(t):
                continue
            v = _value_at(t, rung)
            if v is not None and not math.isnan(v):
                out[self._root(t)] = v  # later members of a lineage win
        return list(out.values())
