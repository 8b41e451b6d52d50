"""The report page: one self-contained HTML file (plotly.js inline, no network needed)."""

from __future__ import annotations

import datetime
import html
import math
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from hpo.exceptions import HpoError
from hpo.execution import METRICS_ATTR, SPEC_ATTR
from hpo.report._figures import Chart, study_charts
from hpo.report._output import write_whole
from hpo.reporting import status_summary, trial_rows
from hpo.storage import redact_url

__all__ = ["THROUGHPUT_KEYS", "render_report", "write_report"]

THROUGHPUT_KEYS = ("samples_per_s", "tokens_per_s")
"""Keys of a trial's extra metrics that measure engine throughput."""

_CSS = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1280px; padding: 0 1.5rem 3rem; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav a { margin-right: .9rem; } .summary td { padding: .1rem .9rem .1rem 0; }
.note { background: #f6f6f2; border-left: 4px solid #c9b458; padding: .6rem 1rem; }
table.trials { border-collapse: collapse; font-size: .85rem; width: 100%; }
table.trials th, table.trials td { border: 1px solid #ddd; padding: .25rem .45rem; text-align: right; }
table.trials th { background: #f0f0f0; cursor: pointer; position: sticky; top: 0; user-select: none; }
table.trials th[aria-sort=ascending]::after { content: " \\25B2"; }
table.trials th[aria-sort=descending]::after { content: " \\25BC"; }
tr.PRUNED td { color: #9a5b00; } tr.FAIL td { color: #b00020; } tr.best td { font-weight: bold; }
.scroll { max-height: 32rem; overflow: auto; }
pre { background: #f6f8fa; padding: 1rem; overflow: auto; }
"""

# Click a header to sort by it, again to reverse. Cells carry their raw value in data-v;
# numbers compare as numbers and empty cells always go last.
_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var key = function (row) { return row.cells[col].getAttribute("data-v"); };
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return (x === "") - (y === ""); }
        var nx = Number(x), ny = Number(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def render_report(study: optuna.Study) -> str:
    """The whole report of ``study`` as one HTML document.

    Raises:
        HpoError: plotly, which draws the charts, is not installed.
    """
    if not optuna.visualization.is_available():
        raise HpoError("the report needs plotly: pip install 'hpo[report]'")
    from plotly.offline import get_plotlyjs

    charts = study_charts(study)
    sections = [(c.id, c.title, _chart_html(c)) for c in charts]
    sections.append(("trials", "Trials", _trials_html(study)))
    sections.append(("throughput", "Engine throughput of the best trial", _throughput_html(study)))
    sections.append(("spec", "Study file", _spec_html(study)))
    nav = " ".join(f'<a href="#{i}">{html.escape(t)}</a>' for i, t, _ in sections)
    body = "\n".join(f'<section id="{i}"><h2>{html.escape(t)}</h2>\n{b}\n</section>' for i, t, b in sections)
    name = html.escape(study.study_name)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>hpo report: {name}</title>\n<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head><body>\n'
        f"<h1>Study {name}</h1>\n{_summary_html(study)}\n<nav>{nav}</nav>\n{body}\n"
        f"<script>{_SORT_JS}</script>\n</body></html>\n"
    )


def write_report(study: optuna.Study, path: str | Path) -> Path:
    """Render the report of ``study`` into ``path``, whole (parent directories are created)."""
    path = Path(path)
    write_whole(path, render_report(study))
    return path


def _chart_html(chart: Chart) -> str:
    if chart.figure is None:
        return f'<p class="note">{html.escape(chart.note or "")}</p>'
    return chart.figure.to_html(
        full_html=False,
        include_plotlyjs=False,  # loaded once in <head>
        div_id=f"fig-{chart.id}",
        default_height="460px",
        config={"displaylogo": False, "responsive": True},
    )


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def _raw(v: Any) -> str:
    """The sort key of a table cell: full precision, empty for missing values."""
    return "" if v is None else str(v)


def _summary_html(study: optuna.Study) -> str:
    s = status_summary(study)
    counts = ", ".join(f"{s[st.name.lower()]} {st.name.lower()}" for st in TrialState if s[st.name.lower()])
    names = study.metric_names or ["value"] * len(study.directions)
    rows = [
        ("objectives", ", ".join(f"{d} {m}" for d, m in zip(s["directions"], names))),
        ("trials", f"{s['trials']} ({counts or 'none yet'})"),
    ]
    if "best_value" in s:
        rows.append(("best", f"{_fmt(s['best_value'])} (trial {s['best_trial']})"))
    rows.append(("generated", datetime.datetime.now().isoformat(timespec="seconds")))
    cells = "".join(f"<tr><td>{k}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="summary">{cells}</table>'


def _best_numbers(study: optuna.Study) -> set[int]:
    try:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:
        return set()
    return {t.number for t in best}


def _trials_html(study: optuna.Study) -> str:
    rows = trial_rows(study)
    if not rows:
        return '<p class="note">The study has no trials yet.</p>'
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    best = _best_numbers(study)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    lines = []
    for r in rows:
        cls = r["state"] + (" best" if r["number"] in best else "")
        cells = "".join(
            f'<td data-v="{html.escape(_raw(r.get(c)))}">{html.escape(_fmt(r.get(c)))}</td>'
            for c in cols
        )
        lines.append(f'<tr class="{cls}">{cells}</tr>')
    body = "\n".join(lines)
    return (
        "<p>Click a column header to sort; the best trial is in bold.</p>\n"
        f'<div class="scroll"><table class="trials sortable"><thead><tr>{head}</tr></thead>\n'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def _throughput_html(study: optuna.Study) -> str:
    try:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:
        return '<p class="note">No trial has completed yet.</p>'
    parts = []
    for t in best[:10]:
        metrics = t.user_attrs.get(METRICS_ATTR) or {}
        speed = [(k, metrics[k]) for k in THROUGHPUT_KEYS if isinstance(metrics.get(k), (int, float))]
        if speed:
            text = ", ".join(f"{v:,.1f} {k.removesuffix('_per_s')}/s" for k, v in speed)
            parts.append(f'<p class="throughput">Trial {t.number}: <b>{html.escape(text)}</b></p>')
        else:
            parts.append(
                f'<p class="note">Trial {t.number} reported no engine throughput '
                f"({' or '.join(THROUGHPUT_KEYS)} in its result).</p>"
            )
        others = {k: v for k, v in metrics.items() if k not in THROUGHPUT_KEYS}
        if others:
            cells = "".join(
                f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>"
                for k, v in others.items()
            )
            parts.append(f'<table class="summary">{cells}</table>')
    return "\n".join(parts)


def _spec_html(study: optuna.Study) -> str:
    spec = study.user_attrs.get(SPEC_ATTR)
    if spec is None:
        return '<p class="note">This study stores no study file (not made by <code>hpo optimize</code>).</p>'
    spec = dict(spec)
    if isinstance(spec.get("storage"), str):
        spec["storage"] = redact_url(spec["storage"])  # a report is shared; passwords are not
    text = yaml.safe_dump(_without_nulls(spec), sort_keys=False, default_flow_style=False, allow_unicode=True)
    return f"<p>As stored with the study; keys left unset are omitted.</p>\n<pre>{html.escape(text)}</pre>"


def _without_nulls(data: Any) -> Any:
    """``data`` without keys whose value is null, except in ``when`` (where null is a value)."""
    if isinstance(data, dict):
        return {k: v if k == "when" else _without_nulls(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_without_nulls(v) for v in data]
    return data
