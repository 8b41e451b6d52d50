"""The one place that maps what a trial function did to the trial's final state."""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterable, Mapping, Sequence

from hpo.exceptions import TrialPruned

__all__ = ["Outcome", "TrialResult", "classify", "gang_result"]


class Outcome(str, Enum):
    """How a trial ended."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"
    INTERRUPTED = "INTERRUPTED"


@dataclass(frozen=True, slots=True)
class TrialResult:
    """A finished trial's outcome, values (for COMPLETE), extra metrics and error text."""

    outcome: Outcome
    values: list[float] | None = None
    metrics: Mapping[str, float] | None = None
    error: str | None = None


def classify(
    returned: Any,
    exc: BaseException | None,
    metric_names: Sequence[str],
) -> TrialResult:
    """Map a trial function's return value or exception to a :class:`TrialResult`.

    A NaN or infinite final value, a missing metric or a non-numeric result makes the
    trial FAIL with the reason stored (the study goes on); it is never recorded as a value.
    """
    from hpo.execution._context import TrialInterrupted

    if isinstance(exc, TrialPruned):
        return TrialResult(Outcome.PRUNED, error=str(exc) or None)
    if isinstance(exc, (TrialInterrupted, KeyboardInterrupt)):
        return TrialResult(Outcome.INTERRUPTED, error="interrupted")
    if exc is not None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return TrialResult(Outcome.FAIL, error=text[-4000:])
    metrics: dict[str, float] = {}
    if isinstance(returned, Mapping):
        for k, v in returned.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[str(k)] = float(v)
        missing = [m for m in metric_names if m not in metrics]
        if missing:
            return TrialResult(
                Outcome.FAIL,
                error=f"the result has no metric {missing[0]!r} (got keys {sorted(returned)})",
            )
        values = [metrics[m] for m in metric_names]
    elif isinstance(returned, (int, float)) and not isinstance(returned, bool) and len(metric_names) == 1:
        values = [float(returned)]
        metrics[metric_names[0]] = values[0]
    elif isinstance(returned, (list, tuple)) and len(returned) == len(metric_names):
        try:
            values = [float(v) for v in returned]
        except (TypeError, ValueError):
            return TrialResult(Outcome.FAIL, error=f"non-numeric result {returned!r}")
        metrics = dict(zip(metric_names, values))
    else:
        return TrialResult(
            Outcome.FAIL,
            error=f"expected a number or a dict with {list(metric_names)}, got {returned!r:.200}",
        )
    bad = [(m, v) for m, v in zip(metric_names, values) if not math.isfinite(v)]
    if bad:
        return TrialResult(Outcome.FAIL, metrics=metrics, error=f"metric {bad[0][0]!r} is {bad[0][1]}")
    return TrialResult(Outcome.COMPLETE, values=values, metrics=metrics)


def gang_result(
    results: Mapping[int, TrialResult], failure: tuple[int, str] | None, unfinished: Iterable[int], workers: int
) -> TrialResult:
    """The result of a trial run by ``workers`` ranks: rank 0's, or a FAIL that names the
    rank that failed first (``failure``: rank and error) or else the first that did not finish."""
    unfinished = sorted(unfinished)
    if failure is None and not unfinished:
        return results[0]
    rank, text = failure or (unfinished[0], "did not finish")
    prefix = f"rank {rank}: " if workers > 1 else ""
    return TrialResult(Outcome.FAIL, metrics=results[0].metrics if 0 in results else None, error=prefix + text)
