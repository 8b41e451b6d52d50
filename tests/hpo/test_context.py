"""What a trial function's context does when the study stops around a report."""

from __future__ import annotations

import pytest

from hpo.execution import TrialContext, TrialInterrupted
from hpo.execution._context import settle_interruption


def _ctx(stop_after_step: int, reports: list) -> TrialContext:
    """A context whose study starts stopping while ``stop_after_step`` is reported."""
    state = {"stopping": False}

    def report(value: float, step: int) -> bool:
        reports.append(step)
        state["stopping"] = state["stopping"] or step >= stop_after_step
        return False

    return TrialContext(params={}, number=0, max_epochs=3, _report=report, _stopping=lambda: state["stopping"])


def test_a_stop_learned_from_a_report_interrupts_at_that_report() -> None:
    reports: list = []
    ctx = _ctx(1, reports)
    with pytest.raises(TrialInterrupted):
        ctx.report(0.5, 1)
    assert reports == [1]  # reported first: a continuation resumes from this step


def test_a_stop_learned_from_the_last_report_lets_the_trial_return_its_result() -> None:
    reports: list = []
    ctx = _ctx(3, reports)
    for step in (1, 2, 3):
        ctx.report(0.5, step)
    assert reports == [1, 2, 3]
    assert settle_interruption(ctx, None, stopping=True) is None  # its return value stands


def test_a_trial_that_swallows_the_interruption_is_still_interrupted() -> None:
    ctx = _ctx(1, [])
    try:
        ctx.report(0.5, 1)
    except TrialInterrupted:
        pass  # a trial function that catches everything
    assert isinstance(settle_interruption(ctx, None, stopping=True), TrialInterrupted)


def test_an_error_while_stopping_is_the_interruption_and_otherwise_the_trial_s() -> None:
    ctx = _ctx(99, [])
    error = RuntimeError("peer's collective broke")
    assert isinstance(settle_interruption(ctx, error, stopping=True), TrialInterrupted)
    assert settle_interruption(ctx, error, stopping=False) is error
    assert settle_interruption(ctx, None, stopping=False) is None
