"""Checkpoint retention: which trial checkpoints survive once trials finish.

Policy ``keep: {best: B, latest: L}``: while a trial runs, its L most recent checkpoints
are kept (``TrialContext.save_checkpoint``). Once it has finished, its checkpoints are
deleted unless it is one of the B best completed trials of the study, it is paused and
may still be promoted, or a queued continuation resumes from them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.execution._resume import RESUME_ATTR

__all__ = ["collect_checkpoints", "disk_usage", "trial_checkpoint_dir"]


def trial_checkpoint_dir(root: Path, number: int) -> Path:
    """``root/trial_<number>``, refusing anything that would leave ``root``."""
    root = root.resolve()
    path = (root / f"trial_{int(number)}").resolve()
    if root not in path.parents:
        raise ValueError(f"checkpoint directory {path} is outside {root}")
    return path


def _best_numbers(study: optuna.Study, trials: list, count: int) -> set[int]:
    if count <= 0:
        return set()
    if len(study.directions) > 1:
        return {t.number for t in study.best_trials[:count]}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return {t.number for t in sorted(complete, key=lambda t: sign * t.value)[:count]}


def collect_checkpoints(study: optuna.Study, root: Path, keep_best: int) -> list[Path]:
    """Delete the checkpoints that the policy no longer needs; return what was deleted."""
    if not root.is_dir():
        return []
    trials = study.get_trials(deepcopy=False)
    keep = _best_numbers(study, trials, keep_best)
    promotable = getattr(study.pruner, "may_promote", None)
    needed: set[Path] = set()
    storage = study._storage  # noqa: SLF001 - system attrs are only read through the storage
    for t in trials:
        if t.state in (TrialState.WAITING, TrialState.RUNNING):
            resume = storage.get_trial_system_attrs(t._trial_id).get(RESUME_ATTR)  # noqa: SLF001
            if resume:
                needed.add(Path(resume["path"]).resolve())
            keep.add(t.number)
        elif t.state == TrialState.PRUNED and promotable is not None and promotable(study, t):
            keep.add(t.number)
    removed = []
    for t in trials:
        if t.number in keep:
            continue
        # Also a trial that saved a checkpoint and failed before the report that records it.
        directory = trial_checkpoint_dir(root, t.number)
        if not directory.is_dir():
            continue
        if any(directory in p.parents for p in needed):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def disk_usage(root: Path) -> int:
    """Bytes of all files below ``root``."""
    if not root.is_dir():
        return 0
    total = 0
    for p in root.rglob("*"):
        try:
            total += p.stat().st_size if p.is_file() else 0
        except FileNotFoundError:
            pass  # deleted by a clean-up while we walked
    return total
