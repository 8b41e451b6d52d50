"""`hpo report`: one offline HTML file whose charts render in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import hpo
from hpo.cli import main
from hpo.execution import InProcessExecutor
from hpo.reporting import Progress

pytest.importorskip("plotly")

FIGURES = ("history", "parallel", "importances", "slice", "contour", "curves")


@pytest.fixture(scope="module")
def curve_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A 10-trial study of learning curves with a median pruner: some trials are pruned."""
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'curve.db'}"
    spec = hpo.spec_from_dict(
        {
            "name": "curve",
            "storage": url,
            "direction": "maximize",
            "metric": "score",
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "median", "n_startup_trials": 2},
            "n_trials": 10,
            "trial": {"entrypoint": "hpo.tasks.synthetic:curve", "max_epochs": 5},
            "search_space": {
                "quality": {"type": "float", "low": 0.0, "high": 1.0},
                "width": {"type": "int", "low": 1, "high": 8},
                "act": {"type": "categorical", "choices": ["relu", "tanh"]},
            },
        }
    )
    study = hpo.optimize(spec, executor=InProcessExecutor(), progress=Progress())
    states = {t.state for t in study.trials}
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    return "curve", url


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("HPO_REQUIRE_CHROMIUM") == "1":
            pytest.fail("HPO_REQUIRE_CHROMIUM=1 but chromium is not installed")
        pytest.skip("chromium is not installed")
    return path


def _browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_is_offline_html_with_every_section(curve_study, tmp_path, capsys) -> None:
    name, url = curve_study
    out = tmp_path / "report.html"
    assert main(["report", name, "--storage", url, "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    # Self-contained: plotly.js inline, no script or stylesheet fetched from anywhere.
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)
    assert text.count("Plotly.newPlot") == len(FIGURES) and len(text) > 3_000_000
    for fig in FIGURES:
        assert f'id="fig-{fig}"' in text
    study = optuna.load_study(study_name=name, storage=url)
    pruned = [t.number for t in study.trials if t.state == TrialState.PRUNED]
    assert f"Trial{pruned[0]} (pruned)" in text
    rows = re.findall(r'<tr class="(COMPLETE|PRUNED)[^"]*">', text)
    assert len(rows) == len(study.trials) and rows.count("PRUNED") == len(pruned)
    assert "entrypoint: hpo.tasks.synthetic:curve" in text and "n_startup_trials: 2" in text


def test_report_renders_plots_in_headless_chromium(curve_study, tmp_path) -> None:
    from PIL import Image

    name, url = curve_study
    page = tmp_path / "report.html"
    assert main(["report", name, "--storage", url, "-o", str(page)]) == 0
    shot = tmp_path / "shot.png"
    res = _browse(page, tmp_path / "p1", f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.exists(), res.stderr[-2000:]
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 500  # charts, not a blank or text-only page

    dom = _browse(page, tmp_path / "p2", "--dump-dom").stdout
    divs = re.findall(r'<div id="fig-(\w+)" class="plotly-graph-div', dom)
    assert sorted(divs) == sorted(FIGURES)
    # plotly.js drew an SVG into every figure: the page's scripts ran offline.
    assert dom.count('class="main-svg"') >= len(FIGURES)
    assert "Trial" in dom and 'class="trials sortable"' in dom


def test_trial_table_sorts_on_header_click(curve_study, tmp_path) -> None:
    name, url = curve_study
    page = tmp_path / "report.html"
    assert main(["report", name, "--storage", url, "-o", str(page)]) == 0
    header = re.search(r"<thead><tr>(.*?)</tr></thead>", page.read_text()).group(1)
    col = re.findall(r"<th>(.*?)</th>", header).index("score")
    click = f'<script>document.querySelectorAll("table.trials th")[{col}].click();</script></body>'
    page.write_text(page.read_text().replace("</body>", click))
    dom = _browse(page, tmp_path / "p", "--dump-dom").stdout
    body = re.search(r'<table class="trials sortable">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    scores = [
        float(row[col]) for row in (re.findall(r'data-v="([^"]*)"', r) for r in body.split("</tr>")[:-1])
    ]
    assert scores == sorted(scores) and len(scores) == 10
    assert 'aria-sort="ascending"' in dom


def _study(
    tmp_path: Path, trials: list[optuna.trial.FrozenTrial], attrs: dict | None = None
) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'small.db'}"
    study = optuna.create_study(study_name="small", storage=url, direction="maximize")
    study.add_trials(trials)
    for k, v in (attrs or {}).items():
        study.set_user_attr(k, v)
    return "small", url


def test_one_trial_one_parameter_gives_notes_not_errors(tmp_path, capsys) -> None:
    trial = create_trial(value=0.5, params={"x": 0.3}, distributions={"x": FloatDistribution(0, 1)})
    name, url = _study(tmp_path, [trial])
    out = tmp_path / "r.html"
    assert main(["report", name, "--storage", url, "-o", str(out)]) == 0
    text = out.read_text()
    assert "Needs at least 2 completed trials (the study has 1)" in text
    assert "A contour needs two parameters; the study has one (x)" in text
    assert "No trial reported intermediate values" in text
    assert "stores no study file" in text and 'id="fig-history"' in text


def test_single_parameter_with_many_trials_skips_importances(tmp_path) -> None:
    dist = {"x": FloatDistribution(0, 1)}
    name, url = _study(
        tmp_path, [create_trial(value=v, params={"x": v}, distributions=dist) for v in (0.1, 0.5, 0.9)]
    )
    assert main(["report", name, "--storage", url, "-o", str(tmp_path / "r.html")]) == 0
    assert "one parameter (x): there is nothing to rank" in (tmp_path / "r.html").read_text()


def test_empty_study_renders(tmp_path) -> None:
    name, url = _study(tmp_path, [])
    assert main(["report", name, "--storage", url, "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    assert "No trial has completed yet." in text and "Plotly.newPlot" not in text


def test_best_trial_throughput_is_shown(tmp_path) -> None:
    dist = {"x": FloatDistribution(0, 1)}
    trials = [
        create_trial(
            value=0.2,
            params={"x": 0.2},
            distributions=dist,
            user_attrs={"hpo:metrics": {"samples_per_s": 11.0}},
        ),
        create_trial(
            value=0.9,
            params={"x": 0.9},
            distributions=dist,
            user_attrs={"hpo:metrics": {"samples_per_s": 4321.5, "tokens_per_s": 98765.0, "val_loss": 0.25}},
        ),
    ]
    spec = {"name": "small", "storage": "postgresql://hpo:s3cret@db/hpo", "run_dir": None, "n_trials": 2}
    name, url = _study(tmp_path, trials, {"hpo:spec": spec})
    assert main(["report", name, "--storage", url, "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    assert "Trial 1: <b>4,321.5 samples/s, 98,765.0 tokens/s</b>" in text
    assert "<td>val_loss</td><td>0.25</td>" in text and "11.0 samples" not in text
    assert "name: small" in text and "run_dir" not in text  # unset keys are left out
    assert "storage: postgresql://hpo:***@db/hpo" in text and "s3cret" not in text


def test_multi_objective_study_gets_a_pareto_front(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    study = optuna.create_study(study_name="mo", storage=url, directions=["minimize", "maximize"])
    study.set_metric_names(["loss", "speed"])
    dists = {"x": FloatDistribution(0, 1), "y": FloatDistribution(0, 1)}
    for x, y in ((0.1, 0.9), (0.5, 0.5), (0.9, 0.2)):
        study.add_trial(create_trial(values=[x, y * 100], params={"x": x, "y": y}, distributions=dists))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"x": 0.3, "y": 0.3}, distributions=dists))
    assert main(["report", "mo", "--storage", url, "-o", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    for fig in ("history", "parallel", "pareto", "importances", "slice", "contour"):
        assert f'id="fig-{fig}"' in text
    assert "loss (objective 1 of 2)" in text and "minimize loss, maximize speed" in text
    assert text.count('<tr class="FAIL') == 1


@pytest.mark.parametrize("command", ["report", "dashboard", "export", "import", "init"])
def test_results_commands_have_help_with_an_example(command, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"example:\n  hpo {command}" in capsys.readouterr().out


def test_unknown_study_is_exit_1(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    assert main(["report", "nope", "--storage", url, "-o", str(tmp_path / "r.html")]) == 1
    assert "no study 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
