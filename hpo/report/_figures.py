"""The report's charts, each drawn by :mod:`optuna.visualization`, or a note saying why not."""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["Chart", "study_charts"]

_HEIGHT_PX = 460
_TRIAL_TRACE = re.compile(r"^Trial(\d+)$")


@dataclass(frozen=True, slots=True)
class Chart:
    """One section of charts: a figure, or a note when the study cannot support it yet."""

    id: str
    title: str
    figure: go.Figure | None = None
    note: str | None = None


def study_charts(study: optuna.Study) -> list[Chart]:
    """Every chart of the report for ``study``, in page order.

    Charts that need more data than the study has (importances from fewer than two
    completed trials, a contour of a single parameter...) come back as notes.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    names = study.metric_names or ["value"] * len(study.directions)
    multi = len(study.directions) > 1
    target: Callable[[FrozenTrial], float] | None = (lambda t: t.values[0]) if multi else None
    label = names[0] if not multi else f"{names[0]} (objective 1 of {len(names)})"
    with warnings.catch_warnings():
        # "too few trials" and experimental-API warnings belong in notes, not on stderr.
        warnings.simplefilter("ignore")
        charts = [
            _history(study, complete, target, label),
            _parallel(study, complete, target, label),
        ]
        if multi:
            charts.append(
                _guard(
                    "pareto",
                    "Pareto front",
                    complete,
                    lambda: optuna.visualization.plot_pareto_front(study, target_names=names),
                )
            )
        importances, imp_chart = _importances(study, complete, target, label)
        charts.append(imp_chart)
        charts += _top_params(study, complete, importances, target, label)
        charts.append(_learning_curves(study))
    return charts


def _guard(chart_id: str, title: str, complete: list[FrozenTrial], draw: Callable[[], go.Figure]) -> Chart:
    """``draw()`` as a chart, or a note when no trial completed or Optuna cannot draw it."""
    if not complete:
        return Chart(chart_id, title, note="No trial has completed yet.")
    try:
        fig = draw()
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return Chart(chart_id, title, note=f"Cannot draw this chart for this study: {e}")
    fig.update_layout(height=_HEIGHT_PX)
    return Chart(chart_id, title, figure=fig)


def _history(study: optuna.Study, complete: list[FrozenTrial], target: Callable | None, label: str) -> Chart:
    return _guard(
        "history",
        "Optimization history",
        complete,
        lambda: optuna.visualization.plot_optimization_history(study, target=target, target_name=label),
    )


def _parallel(study: optuna.Study, complete: list[FrozenTrial], target: Callable | None, label: str) -> Chart:
    if complete and not any(t.params for t in complete):
        return Chart("parallel", "Parallel coordinates", note="The study has no parameters.")
    return _guard(
        "parallel",
        "Parallel coordinates",
        complete,
        lambda: optuna.visualization.plot_parallel_coordinate(study, target=target, target_name=label),
    )


def _param_names(complete: list[FrozenTrial]) -> list[str]:
    """Parameters ordered by how many completed trials have them (conditional ones last)."""
    counts = Counter(name for t in complete for name in t.params)
    return [name for name, _ in counts.most_common()]


def _importances(
    study: optuna.Study, complete: list[FrozenTrial], target: Callable | None, label: str
) -> tuple[dict[str, float], Chart]:
    title = "Hyperparameter importances"
    params = _param_names(complete)
    if len(complete) < 2:
        return {}, Chart(
            "importances", title, note=f"Needs at least 2 completed trials (the study has {len(complete)})."
        )
    if len(params) < 2:
        what = f"one parameter ({params[0]})" if params else "no parameters"
        return {}, Chart("importances", title, note=f"The study has {what}: there is nothing to rank.")
    try:
        importances = optuna.importance.get_param_importances(study, target=target)
    except (ValueError, RuntimeError) as e:
        return {}, Chart("importances", title, note=f"Cannot compute importances: {e}")
    fig = optuna.visualization.plot_param_importances(study, target=target, target_name=label)
    fig.update_layout(height=_HEIGHT_PX)
    return dict(importances), Chart("importances", title, figure=fig)


def _top_params(
    study: optuna.Study,
    complete: list[FrozenTrial],
    importances: dict[str, float],
    target: Callable | None,
    label: str,
) -> list[Chart]:
    ranked = list(importances) or _param_names(complete)
    top = ranked[:2]
    why = "the two most important parameters" if importances else "the two parameters most trials have"
    if not complete or not top:
        note = "No trial has completed yet." if not complete else "The study has no parameters."
        return [Chart("slice", "Slice of the top parameters", note=note)]
    charts = [
        _guard(
            "slice",
            f"Slice: {', '.join(top)}" + (f" ({why})" if len(ranked) > 2 else ""),
            complete,
            lambda: optuna.visualization.plot_slice(study, params=top, target=target, target_name=label),
        )
    ]
    if len(top) < 2:
        charts.append(
            Chart("contour", "Contour", note=f"A contour needs two parameters; the study has one ({top[0]}).")
        )
    else:
        charts.append(
            _guard(
                "contour",
                f"Contour: {top[0]} and {top[1]}",
                complete,
                lambda: optuna.visualization.plot_contour(
                    study, params=top, target=target, target_name=label
                ),
            )
        )
    return charts


def _learning_curves(study: optuna.Study) -> Chart:
    title = "Learning curves"
    trials = study.get_trials(deepcopy=False)
    if not any(t.intermediate_values for t in trials):
        return Chart("curves", title, note="No trial reported intermediate values.")
    fig = optuna.visualization.plot_intermediate_values(study)
    states = {t.number: t.state for t in trials}
    pruned = 0
    for trace in fig.data:
        m = _TRIAL_TRACE.match(trace.name or "")
        if m and states.get(int(m.group(1))) == TrialState.PRUNED:
            pruned += 1
            trace.update(
                name=f"{trace.name} (pruned)",
                line={"dash": "dot", "color": "#d62728"},
                marker={"symbol": "x", "color": "#d62728", "size": 8},
            )
    fig.update_layout(
        title=f"Intermediate values of {len(fig.data)} trials"
        + (f"; {pruned} pruned (red, dotted)" if pruned else ""),
        height=_HEIGHT_PX,
    )
    return Chart("curves", title, figure=fig)
