"""Continuing a trial in a new one: retries after failures and promotions of paused trials.

A continuation is a WAITING trial with the same parameters, the learning curve up to the
step it resumes from, and a system attribute pointing at the checkpoint to load. The
study loop's ``ask()`` takes waiting trials first, so continuations run before new ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "CHECKPOINT_ATTR",
    "CONTINUES_ATTR",
    "PROMOTED",
    "PROMOTED_AT_END",
    "ERROR_ATTR",
    "METRICS_ATTR",
    "NOT_CONTINUED_ATTR",
    "PREVIOUS_ERRORS_ATTR",
    "RESUME_ATTR",
    "continuation_mark",
    "continued_trial",
    "enqueue_continuation",
    "latest_checkpoint",
]

ERROR_ATTR = "hpo:error"  # user attr: why a trial failed (or was pruned)
METRICS_ATTR = "hpo:metrics"  # user attr: every metric a trial returned, when more than the objectives
CHECKPOINT_ATTR = "hpo:checkpoint"  # user attr of a trial: its latest {"step", "path"}
RESUME_ATTR = "hpo:resume"  # system attr of a continuation: {"step", "path"} to load
CONTINUES_ATTR = "hpo:continues"  # system attr of a continuation: {"trial", "reason"}
NOT_CONTINUED_ATTR = "hpo:not_continued"  # system attr of a trial that ends without continuation: why
PROMOTED, PROMOTED_AT_END = "promoted", "promoted after the budget"  # reasons of promotions
PREVIOUS_ERRORS_ATTR = "hpo:previous_errors"


def continuation_mark(t: FrozenTrial) -> dict:
    """``t``'s continuation mark, ``{"trial", "reason"}``; empty for a trial that continues none."""
    mark = t.system_attrs.get(CONTINUES_ATTR)
    return mark if isinstance(mark, dict) else {}


def continued_trial(t: FrozenTrial) -> int | None:
    """The number of the trial ``t`` continues, if any."""
    mark = continuation_mark(t)
    return int(mark["trial"]) if "trial" in mark else None


def latest_checkpoint(trial: FrozenTrial) -> tuple[int, str] | None:
    """The trial's latest recorded checkpoint, if its directory still exists."""
    ck = trial.user_attrs.get(CHECKPOINT_ATTR)
    if isinstance(ck, dict) and Path(str(ck.get("path", ""))).is_dir():
        return int(ck["step"]), str(ck["path"])
    return None


def enqueue_continuation(
    study: optuna.Study,
    trial: FrozenTrial,
    *,
    reason: str,
    max_attempts: int | None,
    retry: bool = True,
) -> bool:
    """Queue a trial that continues ``trial`` from its latest checkpoint (or from scratch).

    Args:
        study: The study both trials belong to.
        trial: The trial to continue: ended (FAIL or PRUNED), or RUNNING and about to fail.
        reason: Why, e.g. ``"error"``, ``"heartbeat lost"``, ``"promoted"``.
        max_attempts: Most attempts a chain of retries may reach (None: no limit).
        retry: Mark the new trial as a retry (Optuna's ``failed_trial``/``retry_history``).

    Returns:
        Whether a continuation was queued (False when attempts are used up).
    """
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    if retry and max_attempts is not None and len(history) >= max_attempts:
        return False
    ck = latest_checkpoint(trial)
    if ck and max(trial.intermediate_values, default=-1) < ck[0]:
        # Recorded for a report that never landed (the process died between the two writes):
        # resuming there would leave that step out of the curve, so start over.
        ck = None
    step = ck[0] if ck else 0
    system_attrs: dict[str, Any] = {
        k: v for k, v in trial.system_attrs.items()
        if k not in (RESUME_ATTR, CONTINUES_ATTR, NOT_CONTINUED_ATTR, "fixed_params")
    }
    system_attrs[CONTINUES_ATTR] = {"trial": trial.number, "reason": reason}
    if retry:
        system_attrs["failed_trial"] = history[0]
        system_attrs["retry_history"] = history
    if ck:
        system_attrs[RESUME_ATTR] = {"step": ck[0], "path": ck[1]}
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k != ERROR_ATTR}
    if trial.user_attrs.get(ERROR_ATTR):
        errors = list(user_attrs.get(PREVIOUS_ERRORS_ATTR, []))
        errors.append(f"trial {trial.number}: {trial.user_attrs[ERROR_ATTR].strip().splitlines()[-1][:300]}")
        user_attrs[PREVIOUS_ERRORS_ATTR] = errors
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            intermediate_values={s: v for s, v in trial.intermediate_values.items() if s <= step},
        )
    )
    return True


def remove_checkpoints(directory: Path, keep_latest: int = 1) -> None:
    """Delete all but the ``keep_latest`` highest-step ``step_<n>`` checkpoints in ``directory``."""
    if not directory.is_dir():
        return
    steps = sorted(
        (c for c in directory.iterdir() if c.name.startswith("step_") and c.name[5:].isdigit()),
        key=lambda c: int(c.name[5:]),
    )
    for child in steps[: max(0, len(steps) - keep_latest)]:
        shutil.rmtree(child, ignore_errors=True)
