"""Summaries of a stored study: ``hpo status``, ``hpo best`` and ``hpo trials``."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from typing import IO, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.execution._resume import ERROR_ATTR, METRICS_ATTR, PREVIOUS_ERRORS_ATTR

__all__ = ["best_summary", "status_summary", "trial_rows", "write_trials"]



def status_summary(study: optuna.Study, n_trials: int | None = None) -> dict[str, Any]:
    """Counts by state, best value and the study's metric names, as plain data."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    out: dict[str, Any] = {
        "study": study.study_name,
        "directions": [d.name.lower() for d in study.directions],
        "metrics": study.metric_names,
        "trials": len(trials),
        "target": n_trials,
        **{s.name.lower(): states.get(s.name, 0) for s in TrialState},
    }
    if len(study.directions) == 1 and states.get("COMPLETE"):
        out["best_value"] = study.best_value
        out["best_trial"] = study.best_trial.number
    return out


def best_summary(study: optuna.Study) -> list[dict[str, Any]]:
    """The best trial (or the Pareto front for several objectives) as plain data."""
    best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    return [{"number": t.number, "values": t.values, "params": t.params, "metrics": t.user_attrs.get(METRICS_ATTR, {})} for t in best]


def _duration(t: FrozenTrial) -> float | None:
    if t.datetime_start and t.datetime_complete:
        return round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    return None


def trial_rows(study: optuna.Study, *, curves: bool = False) -> list[dict[str, Any]]:
    """One flat dict per trial: number, state, values, params (``param.X``), duration, error."""
    names = study.metric_names or [f"value_{i}" for i in range(len(study.directions))]
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for i, name in enumerate(names):
            row[name or f"value_{i}"] = t.values[i] if t.values else None
        for k, v in sorted(t.params.items()):
            row[f"param.{k}"] = v
        row["duration_s"] = _duration(t)
        history = t.system_attrs.get("retry_history", [])
        row["attempt"] = len(history) + 1
        row["retry_of"] = t.system_attrs.get("failed_trial")
        row["previous_errors"] = " | ".join(t.user_attrs.get(PREVIOUS_ERRORS_ATTR, [])) or None
        err = t.user_attrs.get(ERROR_ATTR)
        row["error"] = err.strip().splitlines()[-1] if err else None
        if curves:
            row["curve"] = {int(k): v for k, v in sorted(t.intermediate_values.items())}
        rows.append(row)
    return rows


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return json.dumps(v)
    return str(v)


def write_trials(rows: list[dict[str, Any]], fmt: str, out: IO[str]) -> None:
    """Write ``rows`` as ``csv``, ``json`` or a ``table``."""
    cols = _columns(rows)
    if fmt == "json":
        json.dump(rows, out, indent=2, default=str)
        out.write("\n")
    elif fmt == "csv":
        w = csv.DictWriter(out, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*cols, show_lines=False)
        for r in rows:
            table.add_row(*(_fmt(r.get(c)) for c in cols))
        Console(file=out, width=max(120, 14 * len(cols))).print(table)
